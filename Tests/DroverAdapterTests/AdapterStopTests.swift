import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// drover-adapter run directly, the test playing drover: how it leaves when drover stops it.
@Suite struct AdapterStopTests {
    static let adapter = FileSystem.executableDirectory() + "/drover-adapter"

    /// Sends SIGTERM to argv[1] without pause until it has exited (a zombie, not yet reaped,
    /// so its pid cannot be anyone else's) or 10 s passed; says how many it sent.
    static let flood = """
        import os, sys, time
        pid, deadline = int(sys.argv[1]), time.monotonic() + 10
        def state():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return "gone"
        sent = 0
        while time.monotonic() < deadline and state() not in ("Z", "gone"):
            os.kill(pid, 15)
            sent += 1
        print(sent)
        """

    /// drover sends SIGTERM with its cancel frame, and under load it can land at any moment,
    /// even as the adapter leaves after stopping its CLI. However it falls, the adapter ends
    /// by its own exit (143, a cut-off turn), never by the signal, and its CLI is gone. The
    /// CLI here ignores SIGTERM, so the adapter leaves only after its grace (SIGKILL to the
    /// CLI): by then the flood of SIGTERMs is under way and goes on through the exit.
    @Test func aCancelsSIGTERMNeverKillsTheAdapterWhateverMomentItLands() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        for round in 1...5 {
            let cliLog = folder + "/cli-\(round).log"
            let agent = try FramedProcess(
                ["/usr/bin/env", "FAKE_CLI_LOG=" + cliLog, Self.adapter, "claude", "--program", Recorded.standIn, "--grace", "400ms"],
                stderr: folder + "/stderr-\(round)")
            try agent.send([
                "type": "start", "protocol": 1, "task_id": "bg_0000000a", "session_id": "ses_0000000a", "agent": "fake-claude",
                "provider": "anthropic", "model": "m", "description": "", "prompt": "fake: replay=silent ignore_term=1 sleep=60", "resume": false,
                "workdir": .string(folder),
            ])
            var sawSession = false
            while !sawSession, let frame = try agent.next(timeoutMs: 10_000) { sawSession = frame["type"] == "session" }
            #expect(sawSession, "round \(round): the CLI started and said its session")
            let cli = Int32(try #require(try readLines(cliLog).first?["pid"]?.intValue))
            try agent.send(["type": "cancel", "reason": "user"])
            let flooder = try spawnChild(["/usr/bin/python3", "-c", Self.flood, String(agent.pid)], output: .file(folder + "/flood.out"), stderr: folder + "/flood.err")
            #expect(DroverTestSupport.waitForExit(flooder) == 0, "round \(round): \(readText(folder + "/flood.err"))")
            let sent = Int(readText(folder + "/flood.out").split(separator: "\n").first ?? "") ?? 0
            #expect(sent > 0, "round \(round): SIGTERMs reached the adapter before it left")
            let status = agent.waitForExit(timeoutMs: 5_000)
            #expect(agent.terminatingSignal == nil, "round \(round): the adapter was killed by signal \(agent.terminatingSignal ?? 0)")
            #expect(status == 143, "round \(round): a cancelled turn exits 143")
            #expect(eventually(withinMs: 5_000) { !Processes.exists(cli) }, "round \(round): the CLI is reaped")
        }
    }
}

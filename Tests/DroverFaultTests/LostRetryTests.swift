import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `retryOn: ["lost"]` across real daemon crashes: a task cut off by a SIGKILL is tried
/// again once per lost attempt, with its attempts numbered on across the restart.
@Suite struct LostRetryTests {
    @Test func aLostAttemptIsTriedAgainOnceAndNumberedAcrossTheRestart() throws {
        let side = try temporaryFolder()
        defer { removeTree(side) }
        // Attempt 1 of `once` hangs until killed; attempt 2 answers. `twice` always hangs.
        let d = try FaultDaemon(agents: """
            "once": { "command": ["/bin/sh", "-c", "{prompt}"], "protocol": "raw", "provider": "local", "retryOn": ["lost"], "retries": 1 },
            "never": { "command": ["/bin/sh", "-c", "{prompt}"], "protocol": "raw", "provider": "local" }
            """)
        try d.start()
        let script = "echo \"$DROVER_ATTEMPT\" >> \(side)/$DROVER_TASK_ID; if [ \"$DROVER_ATTEMPT\" = 1 ]; then exec sleep 60; fi; echo answered"
        let once = try d.launch(script, agent: "once")
        let twice = try d.launch("echo \"$DROVER_ATTEMPT\" >> \(side)/$DROVER_TASK_ID; exec sleep 60", agent: "once")
        let never = try d.launch(script, agent: "never")
        #expect(eventually { [once, twice, never].allSatisfy { readText(side + "/" + $0) == "1\n" } }, "the first attempts did not start")
        for round in 1...2 {
            let killed = try #require(d.pid)
            kill(killed, SIGKILL)
            #expect(eventually { !Processes.isAlive(killed) })
            // The next command starts a daemon whose recovery decides.
            _ = try d.ok(["status"])
            if round == 1 {
                #expect(eventually { readText(side + "/" + twice) == "1\n2\n" }, "the lost attempt was not tried again")
                #expect(eventually { d.status(once) == "completed" })
            }
        }
        try d.waitEnded([once, twice, never])
        let first = try d.task(once)
        #expect(first["status"] == "completed" && first["attempt"] == 2)
        #expect(readText(d.state + "/tasks/\(once)/result.md") == "answered\n")
        #expect(first["attempts"]?.arrayValue?.compactMap { $0.objectValue?["reason"]?.stringValue } == ["lost", "exit"])
        // Lost twice, with one retry: the second loss ends it.
        let second = try d.task(twice)
        #expect(second["status"] == "error" && second["reason"] == "lost" && second["attempt"] == 2)
        #expect(readText(side + "/" + twice) == "1\n2\n", "exactly one retry")
        // Without retryOn lost, a lost task is not run again.
        #expect(try d.task(never)["reason"] == "lost" && readText(side + "/" + never) == "1\n")
        let lines = try readLines(d.state + "/events.jsonl").filter { $0["task_id"]?.stringValue == once }
        #expect(lines.map { $0["status"]?.stringValue ?? "" } == ["pending", "running", "pending", "running", "completed"])
        #expect(lines[2]["reason"] == "retry" && lines[2]["attempt"] == 2)
    }
}

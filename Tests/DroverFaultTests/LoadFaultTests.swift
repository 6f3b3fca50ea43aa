import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Faults that load the supervisor: a flood of output, a fork bomb, a worker that never
/// reads what drover writes to it. Healthy tasks run through each; the same checks follow.
@Suite struct LoadFaultTests {
    @Test func aFloodOf100MBOfMessages() throws {
        let d = try FaultDaemon()
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let started = Clock.monotonicNs()
        let fault = try d.launch("@flood 100 1048576\n@result flooded")
        try d.waitEnded([fault])
        let seconds = Double(Clock.monotonicNs() - started) / 1e9
        // The daemon kept answering meanwhile, and the worker's frames all arrived.
        #expect(try d.task(fault)["progress"]?.objectValue?["messages"]?.intValue == 100)
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .completed(result: "flooded")], healthy: healthy).run()
        print("flood: 100 MiB in \(seconds) s")
    }
}

extension LoadFaultTests {
    @Test func aForkBombUnderAProcessesLimit() throws {
        // The kernel never applies RLIMIT_NPROC to root, so as root the daemon (and with it
        // the bomb) runs as nobody; the limit counts that user's processes and threads.
        let d = try FaultDaemon(agents: #""bomb": { "command": ["drover-mock-agent"], "provider": "mock", "limits": { "processes": 40 } }"#,
                                user: geteuid() == 0 ? "nobody" : nil)
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@fork-bomb\n@hang", agent: "bomb", ["--ttl", "1500ms"])
        try d.waitEnded([fault])
        let transcript = try readLines(d.state + "/tasks/\(fault)/transcript.jsonl")
        let report = transcript.compactMap { $0["text"]?.stringValue }.first { $0.hasPrefix("fork bomb:") }
        #expect(report?.contains("fork failed: Resource temporarily unavailable") == true, "the limit did not stop the bomb: \(report ?? "no report")")
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .cancelled("ttl")], healthy: healthy).run()
    }

    @Test func aWorkerThatNeverReadsItsStdin() throws {
        let d = try FaultDaemon()
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@message not listening\n@no-read")
        #expect(eventually { (try? d.task(fault))?["progress"]?.objectValue?["messages"]?.intValue == 1 })
        let session = try #require(try d.task(fault)["session_id"]?.stringValue)
        // 8 follow-ups of 512 KiB: far more than a pipe holds. Each is accepted at once, and
        // the daemon keeps answering while they pile up.
        let text = String(repeating: "please read me ", count: 512 * 1024 / 15)
        for _ in 0..<8 {
            let started = Clock.monotonicNs()
            let answer = try d.call(["type": "continue", "session": .string(session), "prompt": .string(text)])
            #expect(answer["delivered"] == true && answer["task_id"]?.stringValue == fault)
            #expect(Clock.monotonicNs() - started < 1_000_000_000, "a continue took \((Clock.monotonicNs() - started) / 1_000_000) ms")
        }
        let started = Clock.monotonicNs()
        #expect(try d.stats()["running"]?.intValue == 4)
        #expect(Clock.monotonicNs() - started < 1_000_000_000)
        _ = try d.ok(["cancel", fault])
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .cancelled("user")], healthy: healthy).run()
    }
}

import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Faults of one worker, each injected while healthy tasks run beside it, each followed by
/// the same checks (FaultCheck).
@Suite struct WorkerFaultTests {
    /// Runs one fault task (launched once the healthy ones are running) and checks everything.
    private func inject(_ prompt: String, expect expectation: Expected, agent: String = "mock", settings: String = "",
                        sourceLocation: SourceLocation = #_sourceLocation) throws
    {
        let d = try FaultDaemon(settings: settings, agents: SandboxedFaultTests.boxed)
        try d.start()
        let healthy = try HealthyTasks.launch(on: d, sourceLocation: sourceLocation)
        let fault = try d.launch(prompt, agent: agent, sourceLocation: sourceLocation)
        try d.waitEnded([fault], sourceLocation: sourceLocation)
        if agent == "boxed" { #expect(try d.task(fault)["sandbox"]?.objectValue?["filesystem"] == "workdir", sourceLocation: sourceLocation) }
        try healthy.release(on: d, sourceLocation: sourceLocation)
        try FaultCheck(d, expected: [fault: expectation], healthy: healthy, sourceLocation: sourceLocation).run()
    }

    /// Also under bwrap (the agent "boxed"): the same end.
    @Test(arguments: ["mock", "boxed"]) func crashBySignal(agent: String) throws {
        try inject("@message about to crash\n@crash", expect: .error("signal", "SIGSEGV"), agent: agent)
    }

    /// Also under bwrap (the agent "boxed"): the same end.
    @Test(arguments: ["mock", "boxed"]) func nonZeroExit(agent: String) throws {
        try inject("@message leaving\n@exit 3", expect: .error("exit_code", "exited with code 3"), agent: agent)
    }

    /// Also under bwrap (the agent "boxed"): the same end.
    @Test(arguments: ["mock", "boxed"]) func exitInTheMiddleOfAFrame(agent: String) throws {
        try inject("@message before the cut\n@half-frame", expect: .error("protocol", "stream ended inside the frame"), agent: agent)
    }

    @Test func stdoutClosedWhileTheProcessLivesOn() throws {
        try inject("@message closing stdout\n@close-stdout\n@sleep 30s", expect: .error("protocol", "closed its stdout"))
    }

    /// Also under bwrap (the agent "boxed"): the same end.
    @Test(arguments: ["mock", "boxed"]) func garbageBytes(agent: String) throws {
        try inject("@message then garbage\n@garbage\n@hang", expect: .error("protocol", "not valid JSON"), agent: agent)
    }

    @Test func anOversizedFrameHeader() throws {
        try inject("@oversize\n@hang", expect: .error("protocol", "over the limit of 16777216 (maxFrameBytes)"))
    }

    @Test func sigtermIgnored() throws {
        let d = try FaultDaemon()
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@ignore-term\n@message stubborn\n@hang")
        #expect(eventually { (try? d.task(fault))?["progress"]?.objectValue?["messages"]?.intValue == 1 })
        let started = Clock.monotonicNs()
        _ = try d.ok(["cancel", fault])
        // Only SIGKILL, after killGrace (500 ms here), ends it.
        #expect(Clock.monotonicNs() - started >= 450_000_000)
        #expect(try d.task(fault)["signal"]?.intValue == Int(SIGKILL))
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .cancelled("user")], healthy: healthy).run()
    }

    @Test func aGrandchildThatCallsSetsidAndSleeps() throws {
        let d = try FaultDaemon()
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let detachedFile = d.folder + "/detached.pid"
        let groupFile = d.folder + "/grandchild.pid"
        let fault = try d.launch("@spawn-detached \(detachedFile)\n@spawn-grandchild \(groupFile)\n@message spawned\n@result left them behind")
        try d.waitEnded([fault])
        let detached = try #require(Int32(readText(detachedFile).split(separator: "\n").first ?? ""))
        let grandchild = try #require(Int32(readText(groupFile).split(separator: "\n").first ?? ""))
        #expect(detached != grandchild)
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .completed(result: "left them behind")], healthy: healthy, leftovers: [detached, grandchild]).run()
    }
}

import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The process faults of WorkerFaultTests once more with the worker under bubblewrap
/// (SPEC 17): each ends as it does unsandboxed, the healthy tasks beside it are untouched,
/// and nothing is left behind. Not here: a worker that closes its stdout and lives on, which
/// drover cannot see in a sandbox (bwrap, the worker's parent, keeps its own copy of the
/// pipe): it ends by staleTimeout or its exit instead.
@Suite struct SandboxedFaultTests {
    static let boxed = #""boxed": { "command": ["drover-mock-agent"], "provider": "mock", "sandbox": {} }"#

    private func inject(_ prompt: String, expect expectation: Expected, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let d = try FaultDaemon(agents: Self.boxed)
        try d.start()
        let healthy = try HealthyTasks.launch(on: d, sourceLocation: sourceLocation)
        let fault = try d.launch(prompt, agent: "boxed", sourceLocation: sourceLocation)
        try d.waitEnded([fault], sourceLocation: sourceLocation)
        #expect(try d.task(fault)["sandbox"]?.objectValue?["filesystem"] == "workdir", sourceLocation: sourceLocation)
        try healthy.release(on: d, sourceLocation: sourceLocation)
        try FaultCheck(d, expected: [fault: expectation], healthy: healthy, sourceLocation: sourceLocation).run()
    }

    @Test func crashBySignal() throws {
        try inject("@message about to crash\n@crash", expect: .error("signal", "SIGSEGV"))
    }

    @Test func nonZeroExit() throws {
        try inject("@message leaving\n@exit 3", expect: .error("exit_code", "exited with code 3"))
    }

    @Test func exitInTheMiddleOfAFrame() throws {
        try inject("@message before the cut\n@half-frame", expect: .error("protocol", "stream ended inside the frame"))
    }

    @Test func garbageBytes() throws {
        try inject("@message then garbage\n@garbage\n@hang", expect: .error("protocol", "not valid JSON"))
    }

    @Test func sigtermIgnoredEndsBySigkill() throws {
        let d = try FaultDaemon(agents: Self.boxed)
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@ignore-term\n@message stubborn\n@hang", agent: "boxed")
        #expect(eventually { (try? d.task(fault))?["progress"]?.objectValue?["messages"]?.intValue == 1 })
        _ = try d.ok(["cancel", fault])
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .cancelled("user")], healthy: healthy).run()
    }
}

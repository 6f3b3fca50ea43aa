import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Process faults under bubblewrap (SPEC 17); WorkerFaultTests runs its crash, exit, cut
/// frame and garbage faults with this agent too. Not under bwrap: a worker that closes its
/// stdout and lives on, which drover cannot see in a sandbox (bwrap, the worker's parent,
/// keeps its own copy of the pipe): it ends by staleTimeout or its exit instead.
@Suite struct SandboxedFaultTests {
    static let boxed = #""boxed": { "command": ["drover-mock-agent"], "provider": "mock", "sandbox": {} }"#

    @Test func aWorkerIgnoringSigtermStillEndsOnCancel() throws {
        let d = try FaultDaemon(agents: Self.boxed)
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@ignore-term\n@message stubborn\n@hang", agent: "boxed")
        #expect(eventually { (try? d.task(fault))?["progress"]?.objectValue?["messages"]?.intValue == 1 })
        _ = try d.ok(["cancel", fault])
        try healthy.release(on: d)
        #expect(try d.task(fault)["sandbox"] != nil)
        try FaultCheck(d, expected: [fault: .cancelled("user")], healthy: healthy).run()
    }
}

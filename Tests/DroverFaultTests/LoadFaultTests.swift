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

@testable import DroverCore
import Glibc
import Testing

@Suite struct ProcessStartTimeTests {
    @Test func aProcessStartTimeMatchesTheClock() throws {
        let harness = try Harness()
        let id = try harness.submit("@message up\n@sleep 2s\n@result done")
        harness.run(forMs: 300)
        let snapshot = try #require(harness.supervisor.snapshot(id))
        let pid = try #require(snapshot.pid)
        let started = try #require(snapshot.startedMs)
        #expect(ProcessStartTime.isSameProcess(pid: pid, startedMs: started))
        // A process that started at another time is not the same one.
        #expect(!ProcessStartTime.isSameProcess(pid: pid, startedMs: started - 60_000))
        #expect(!ProcessStartTime.isSameProcess(pid: getpid(), startedMs: started + 60_000))
        harness.supervisor.cancel(id)
        harness.run(until: [id])
    }
}

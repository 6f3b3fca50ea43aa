@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Workers through srun on the real one-node cluster, through the supervisor alone (SPEC 14).
@Suite struct SlurmSupervisorTests {
    @Test func aJobHeldForItsLicenseShowsItThenRunsWithItsTimersFromThen() throws {
        try SlurmCluster.require()
        var config = DroverConfig()
        config.timers.killGrace = 500
        config.timers.minIdleTime = 0
        config.launcher = .slurm(LauncherSettings())
        let harness = try Harness(config: config)
        let ids = try (1...3).map { n in try harness.submit("@message hi\n@sleep 1500ms\n@result done \(n)") { $0.timers.taskTtl = 60_000 } }
        var sawHeld = false
        var heldJob: JSONObject?
        harness.run(forMs: 200)
        for _ in 0..<40 where !sawHeld {
            harness.run(forMs: 100)
            for id in ids {
                guard let record = harness.supervisor.snapshot(id), record.waitingFor == .cluster,
                      let slurm = record.extra["slurm"]?.objectValue, slurm["state"] == "PENDING" else { continue }
                sawHeld = true
                heldJob = slurm
            }
        }
        #expect(sawHeld, "one of three waited for the license: \(ids.map { harness.supervisor.snapshot($0)?.extra["slurm"] ?? .null })")
        #expect(heldJob?["job_id"]?.stringValue.flatMap { Int($0) } != nil)
        let ended = harness.run(until: ids, timeoutMs: 60_000)
        for (n, id) in ids.enumerated() {
            #expect(ended[id]?.status == .completed && (try? harness.result(id)) == "done \(n + 1)")
        }
        let recorded = ids.compactMap { harness.ended[$0]?.extra["slurm"]?.objectValue?["job_id"] }
        #expect(recorded.count == 3, "every task knows its job id")
        #expect(SlurmCluster.jobs(named: ids).isEmpty)
    }
}

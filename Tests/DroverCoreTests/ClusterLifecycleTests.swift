@testable import DroverCore
import DroverWire
import Glibc
import Testing

/// A worker through srun, in the lifecycle alone (SPEC 14), on a fake clock: while Slurm
/// holds the job no timer counts; the ttl counts from when it runs; a job srun may leave
/// behind is cancelled.
@Suite struct ClusterLifecycleTests {
    static func subject(ttl: Int = 10_000) -> TaskLifecycle {
        var timers = TimerSettings().resolved
        timers.taskTtl = ttl
        timers.killGrace = 1_000
        let record = TaskSnapshot(id: "bg_0000000a", sessionID: "ses_0000000b", agent: "explore", provider: "mock", model: nil, key: "explore",
                                  description: "d", prompt: "p", createdMs: 1_000, ttlMs: ttl, pool: "provider:mock")
        var task = TaskLifecycle(record: record, settings: LifecycleSettings(timers: timers, workdir: "/w", clustered: true), now: at(0))
        _ = task.handle(.admitted, at: at(0))
        _ = task.handle(.slotGranted(slot: 0), at: at(0))
        _ = task.handle(.startRecorded, at: at(0))
        return task
    }

    static func at(_ ms: UInt64) -> Moment { Moment(monotonicMs: ms, wallMs: 1_000 + Int64(ms)) }

    @Test func noTimerCountsWhileSlurmHoldsTheJob() {
        var task = Self.subject()
        let spawned = task.handle(.spawned(pid: 42), at: Self.at(10))
        #expect(!spawned.contains { if case .arm = $0 { true } else { false } }, "\(spawned)")
        #expect(task.record.status == .running && task.record.waitingFor == .cluster)
        let held = task.handle(.clusterJob(jobID: "17", state: "PENDING"), at: Self.at(300))
        #expect(held == [.recordProgress] && task.record.extra["slurm"] == ["job_id": "17", "state": "PENDING"])
        #expect(task.handle(.clusterJob(jobID: "17", state: "PENDING"), at: Self.at(600)).isEmpty, "nothing new")
        let runs = task.handle(.clusterJob(jobID: "17", state: "RUNNING"), at: Self.at(5_000))
        #expect(runs.contains(.arm(.ttl, atMs: 15_000)), "the ttl from when the job runs: \(runs)")
        #expect(task.record.waitingFor == nil && task.record.startedMs == 6_000)
    }

    @Test func theWorkersFirstFrameSaysTheJobRuns() {
        var task = Self.subject()
        _ = task.handle(.spawned(pid: 42), at: Self.at(10))
        let effects = task.handle(.frame(.hello(protocolVersion: 1, worker: nil, version: nil)), at: Self.at(2_000))
        #expect(effects.contains(.arm(.ttl, atMs: 12_000)), "\(effects)")
        #expect(task.record.waitingFor == nil)
    }

    @Test func aKilledSrunOrAFailedTaskHasItsJobCancelled() {
        var task = Self.subject()
        _ = task.handle(.spawned(pid: 42), at: Self.at(10))
        _ = task.handle(.cancel(.user, message: nil), at: Self.at(20))
        let killed = task.handle(.timerFired(.killGrace), at: Self.at(1_020))
        #expect(killed == [.signalGroup(SIGKILL), .cancelClusterJob], "\(killed)")
        _ = task.handle(.exited(ExitStatus(code: 0, signal: SIGKILL)), at: Self.at(1_030))
        let closed = task.handle(.closed(ChildEnd()), at: Self.at(1_040))
        #expect(closed.contains(.cancelClusterJob) && task.record.status == .cancelled)
    }

    @Test func aCompletedTaskLeavesItsJobAlone() {
        var task = Self.subject()
        _ = task.handle(.spawned(pid: 42), at: Self.at(10))
        _ = task.handle(.frame(.result(text: "ok", data: nil)), at: Self.at(20))
        _ = task.handle(.exited(ExitStatus(code: 0, signal: nil)), at: Self.at(30))
        #expect(!task.handle(.closed(ChildEnd()), at: Self.at(40)).contains(.cancelClusterJob))
    }
}

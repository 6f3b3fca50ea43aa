@testable import DroverCore
import DroverWire
import Testing

/// Dependencies in the lifecycle alone (SPEC 13), on a fake clock: a task joins its pool's
/// queue only once every task it waits for has completed, takes their results into its
/// prompt, and ends cancelled(dependency) when one does not complete.
@Suite struct DependencyLifecycleTests {
    static let first = "bg_000000f1"
    static let second = "bg_000000f2"

    static func subject(queuedTtl: Int = 0, prompt: String = "review: {result:bg_000000f1} and {result:bg_000000f2}") -> TaskLifecycle {
        var timers = TimerSettings().resolved
        timers.queuedTtl = queuedTtl
        let record = TaskSnapshot(id: "bg_0000000a", sessionID: "ses_0000000b", agent: "explore", provider: "mock", model: nil, key: "explore",
                                  description: "d", prompt: prompt, createdMs: 1_000, ttlMs: 0, pool: "provider:mock")
        let settings = LifecycleSettings(timers: timers, workdir: "/work", dependencies: [first, second])
        return TaskLifecycle(record: record, settings: settings, now: Moment(monotonicMs: 0, wallMs: 1_000))
    }

    static func at(_ ms: UInt64) -> Moment { Moment(monotonicMs: ms, wallMs: 1_000 + Int64(ms)) }

    @Test func itQueuesOnlyOnceEveryDependencyCompletedWithTheirResultsInItsPrompt() {
        var task = Self.subject(queuedTtl: 500)
        #expect(task.record.waitingFor == .dependency, "from its first record")
        #expect(task.handle(.admitted, at: Self.at(0)).isEmpty, "admitted, but it waits: no queue, no queuedTtl")
        #expect(task.record.status == .pending && task.record.waitingFor == .dependency)
        let one = task.handle(.dependencyEnded(taskID: Self.first, status: .completed, reason: .result, resultText: "the plan"), at: Self.at(10))
        #expect(one == [.recordProgress] && task.record.waitingFor == .dependency, "one of two")
        #expect(task.record.prompt == "review: the plan and {result:bg_000000f2}")
        // Told twice, or of a task it does not wait for: nothing changes.
        #expect(task.handle(.dependencyEnded(taskID: Self.first, status: .error, reason: .exitCode, resultText: nil), at: Self.at(11)).isEmpty)
        #expect(task.handle(.dependencyEnded(taskID: "bg_000000ff", status: .error, reason: .exitCode, resultText: nil), at: Self.at(12)).isEmpty)
        let both = task.handle(.dependencyEnded(taskID: Self.second, status: .completed, reason: .result, resultText: "the code"), at: Self.at(20))
        #expect(both == [.recordProgress, .arm(.queuedTtl, atMs: 520), .recordProgress, .enqueue], "queuedTtl counts from the queue")
        #expect(task.record.prompt == "review: the plan and the code" && task.record.waitingFor == .slot)
        #expect(task.handle(.slotGranted(slot: 0), at: Self.at(30)).contains(.recordStart))
    }

    @Test func aDependencyThatDoesNotCompleteCancelsItNamingIt() {
        var task = Self.subject()
        _ = task.handle(.admitted, at: Self.at(0))
        let effects = task.handle(.dependencyEnded(taskID: Self.second, status: .error, reason: .exitCode, resultText: nil), at: Self.at(5))
        #expect(!effects.contains(.enqueue) && !effects.contains(.withdraw))
        guard case .end(let outcome)? = effects.last else {
            Issue.record("no end: \(effects)")
            return
        }
        #expect(outcome.status == .cancelled && outcome.reason == .dependency)
        #expect(outcome.message == "its dependency bg_000000f2 ended error (exit_code)")
        #expect(task.record.status == .cancelled && task.record.reason == .dependency && task.isEnded)
        // Later news changes nothing.
        #expect(task.handle(.dependencyEnded(taskID: Self.first, status: .completed, reason: .result, resultText: "x"), at: Self.at(6)).isEmpty)
    }

    @Test func dependenciesThatEndedBeforeItWasAdmittedLetItQueueAtOnce() {
        var task = Self.subject()
        _ = task.handle(.dependencyEnded(taskID: Self.first, status: .completed, reason: .result, resultText: "a"), at: Self.at(0))
        _ = task.handle(.dependencyEnded(taskID: Self.second, status: .completed, reason: .result, resultText: "b"), at: Self.at(0))
        #expect(task.record.waitingFor == .dependency, "not queued before it is admitted")
        #expect(task.handle(.admitted, at: Self.at(1)) == [.recordProgress, .enqueue])
        #expect(task.record.waitingFor == .slot)
        #expect(task.record.prompt == "review: a and b")
    }

    @Test func cancellingAWaitingTaskEndsItAtOnce() {
        var task = Self.subject()
        _ = task.handle(.admitted, at: Self.at(0))
        let effects = task.handle(.cancel(.user, message: nil), at: Self.at(3))
        #expect(task.record.status == .cancelled && task.record.reason == .user && effects.contains(.withdraw))
    }
}

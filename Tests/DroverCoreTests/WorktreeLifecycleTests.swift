@testable import DroverCore
import DroverWire
import Testing

/// A worktree task's lifecycle alone (SPEC 13), on a fake clock: the worktree is made
/// before the first attempt and finished after the end, whatever ends it; a cancel while
/// it is being made waits for it, so nothing git made is left behind.
@Suite struct WorktreeLifecycleTests {
    static func subject(retries: Int = 0) -> TaskLifecycle {
        let record = TaskSnapshot(id: "bg_0000000a", sessionID: "ses_0000000b", agent: "explore", provider: "mock", model: nil, key: "explore",
                                  description: "d", prompt: "p", createdMs: 1_000, ttlMs: 0, pool: "provider:mock")
        var retry = RetrySettings()
        retry.retries = retries
        retry.retryOn = [.exitCode]
        let settings = LifecycleSettings(timers: TimerSettings().resolved, workdir: "/state/tasks/bg_0000000a/work",
                                         retry: retry.over(RetrySettings()).resolved, usesWorktree: true)
        return TaskLifecycle(record: record, settings: settings, now: at(0))
    }

    static func at(_ ms: UInt64) -> Moment { Moment(monotonicMs: ms, wallMs: 1_000 + Int64(ms)) }
    static let made: JSONValue = ["branch": "drover/bg_0000000a", "path": "/state/tasks/bg_0000000a/work"]
    static let finished: JSONValue = ["branch": "drover/bg_0000000a", "head": "abc", "files_changed": 1]

    /// Admitted, granted, start recorded: the worktree is asked for, not the spawn.
    static func preparing() -> TaskLifecycle {
        var task = subject()
        _ = task.handle(.admitted, at: at(0))
        _ = task.handle(.slotGranted(slot: 0), at: at(1))
        let effects = task.handle(.startRecorded, at: at(2))
        #expect(effects == [.prepareWorkdir], "\(effects)")
        return task
    }

    @Test func theWorktreeIsMadeBeforeTheSpawnAndFinishedBeforeTheEnd() {
        var task = Self.preparing()
        #expect(task.holdsSlot && task.record.status == .running)
        let ready = task.handle(.workdirReady(worktree: Self.made), at: Self.at(3))
        #expect(ready == [.recordProgress, .spawn] && task.record.extra["worktree"] == Self.made)
        _ = task.handle(.spawned(pid: 42), at: Self.at(4))
        _ = task.handle(.frame(.result(text: "done", data: nil)), at: Self.at(5))
        _ = task.handle(.exited(ExitStatus(code: 0, signal: nil)), at: Self.at(6))
        let closed = task.handle(.closed(ChildEnd()), at: Self.at(7))
        guard case .finishWorkdir(let outcome)? = closed.last else {
            Issue.record("no finishWorkdir: \(closed)")
            return
        }
        #expect(outcome.status == .completed && !closed.contains { if case .end = $0 { true } else { false } })
        #expect(task.record.status == .running && task.holdsSlot && !task.isCancellable, "still its slot while git commits")
        let end = task.handle(.workdirFinished(worktree: Self.finished), at: Self.at(20))
        guard case .end(let ended)? = end.last else {
            Issue.record("no end: \(end)")
            return
        }
        #expect(ended.status == .completed && task.record.status == .completed && task.record.extra["worktree"] == Self.finished)
        #expect(task.record.endedMs == 1_020, "ended once the worktree is finished")
    }

    @Test func aCancelWhileTheWorktreeIsMadeWaitsForItThenFinishesIt() {
        var task = Self.preparing()
        #expect(task.isCancellable)
        #expect(task.handle(.cancel(.user, message: nil), at: Self.at(3)).isEmpty, "git is still making it")
        #expect(!task.isCancellable, "decided")
        let ready = task.handle(.workdirReady(worktree: Self.made), at: Self.at(4))
        guard case .finishWorkdir(let outcome)? = ready.last else {
            Issue.record("no finishWorkdir: \(ready)")
            return
        }
        #expect(!ready.contains(.spawn) && outcome.status == .cancelled && outcome.reason == .user)
        _ = task.handle(.workdirFinished(worktree: Self.finished), at: Self.at(5))
        #expect(task.record.status == .cancelled && task.record.error == "cancelled before it started (user)")
    }

    @Test func aWorktreeThatCannotBeMadeIsASpawnErrorWithNothingToFinish() {
        var task = Self.preparing()
        let effects = task.handle(.workdirFailed("repo /x is not inside a git work tree"), at: Self.at(3))
        guard case .end(let outcome)? = effects.last else {
            Issue.record("no end: \(effects)")
            return
        }
        #expect(!effects.contains(.finishWorkdir(outcome)))
        #expect(task.record.status == .error && task.record.reason == .spawn && task.record.error == "repo /x is not inside a git work tree")
    }

    @Test func aSpawnFailureInAMadeWorktreeStillFinishesIt() {
        var task = Self.preparing()
        _ = task.handle(.workdirReady(worktree: Self.made), at: Self.at(3))
        let effects = task.handle(.spawnFailed("cannot start x"), at: Self.at(4))
        guard case .finishWorkdir(let outcome)? = effects.last else {
            Issue.record("no finishWorkdir: \(effects)")
            return
        }
        #expect(outcome.reason == .spawn)
    }

    /// A task that may be tried again, whose first attempt in its worktree exited 1.
    static func firstAttemptFailed() -> TaskLifecycle {
        var task = Self.subject(retries: 1)
        _ = task.handle(.admitted, at: Self.at(0))
        _ = task.handle(.slotGranted(slot: 0), at: Self.at(1))
        _ = task.handle(.startRecorded, at: Self.at(2))
        _ = task.handle(.workdirReady(worktree: Self.made), at: Self.at(3))
        _ = task.handle(.spawned(pid: 42), at: Self.at(4))
        _ = task.handle(.exited(ExitStatus(code: 1, signal: nil)), at: Self.at(5))
        return task
    }

    @Test func aRetriedAttemptRunsInTheSameWorktree() {
        var task = Self.firstAttemptFailed()
        let closed = task.handle(.closed(ChildEnd()), at: Self.at(6))
        #expect(closed.contains { if case .attemptEnded = $0 { true } else { false } }, "\(closed)")
        #expect(!closed.contains { if case .finishWorkdir = $0 { true } else { false } }, "not finished between attempts")
        _ = task.handle(.timerFired(.retry), at: Self.at(5_000))
        _ = task.handle(.slotGranted(slot: 0), at: Self.at(5_001))
        #expect(task.handle(.startRecorded, at: Self.at(5_002)) == [.spawn], "the worktree is there already")
    }

    @Test func aCancelBetweenAttemptsFinishesTheWorktree() {
        var task = Self.firstAttemptFailed()
        _ = task.handle(.closed(ChildEnd()), at: Self.at(6))
        let effects = task.handle(.cancel(.user, message: nil), at: Self.at(7))
        #expect(effects.first == .withdraw && effects.last == .finishWorkdir(Outcome(.user, message: "cancelled while pending (user)")), "\(effects)")
    }
}

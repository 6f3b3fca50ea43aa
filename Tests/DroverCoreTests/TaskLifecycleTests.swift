@testable import DroverCore
import DroverWire
import Glibc
import Testing

/// The lifecycle alone, on a fake clock: every timer rule of SPEC sections 2 and 4 as events
/// in and effects out, with no process, loop or disk.
@Suite struct TaskLifecycleTests {
    /// A lifecycle and the fake time it is told.
    struct Subject {
        var lifecycle: TaskLifecycle
        var nowMs: UInt64 = 0

        init(_ configure: (inout ResolvedTimers) -> Void = { _ in }, raw: Bool = false, maxToolCalls: Int = 0, maxTranscriptBytes: Int = 0) {
            var timers = TimerSettings().resolved
            configure(&timers)
            let record = TaskSnapshot(id: "bg_0000000a", sessionID: "ses_0000000b", agent: "explore", provider: "mock", model: nil, key: "explore",
                                      description: "d", prompt: "the prompt", createdMs: 1_000, ttlMs: timers.taskTtl, pool: "provider:mock")
            let settings = LifecycleSettings(timers: timers, maxToolCalls: maxToolCalls, maxTranscriptBytes: maxTranscriptBytes, raw: raw,
                                             workdir: "/work", resultPath: "/state/tasks/bg_0000000a/result.md")
            lifecycle = TaskLifecycle(record: record, settings: settings, now: Moment(monotonicMs: 0, wallMs: 1_000))
        }

        @discardableResult
        mutating func at(_ ms: UInt64, _ event: LifecycleEvent) -> [LifecycleEffect] {
            nowMs = ms
            return lifecycle.handle(event, at: Moment(monotonicMs: ms, wallMs: 1_000 + Int64(ms)))
        }

        /// Admitted, granted, recorded and spawned at `ms`: the effects of the spawn.
        @discardableResult
        mutating func start(at ms: UInt64 = 0) -> [LifecycleEffect] {
            at(ms, .admitted)
            #expect(at(ms, .slotGranted(slot: 0)) == [.recordStart])
            #expect(at(ms, .startRecorded) == [.spawn])
            return at(ms, .spawned(pid: 4242))
        }

        /// The process exits and closes: the effects of the close (the end).
        mutating func exitAndClose(at ms: UInt64, code: Int = 0, signal: Int32? = nil) -> [LifecycleEffect] {
            at(ms, .exited(ExitStatus(code: code, signal: signal)))
            return at(ms, .closed(ChildEnd()))
        }

        var record: TaskSnapshot { lifecycle.record }
    }

    static func ended(_ effects: [LifecycleEffect]) -> Outcome? {
        for case .end(let outcome) in effects { return outcome }
        return nil
    }

    // MARK: starting

    @Test func aWorkerStartsOnlyOnceItsStartIsRecorded() {
        var t = Subject { $0.taskTtl = 60_000; $0.staleTimeout = 30_000; $0.minStabilityTime = 10_000 }
        #expect(t.at(0, .admitted) == [.enqueue], "without dependencies it joins its pool's queue at once")
        #expect(t.record.status == .pending && t.record.waitingFor == .slot)
        #expect(t.at(5, .slotGranted(slot: 2)) == [.recordStart])
        #expect(t.record.status == .running && t.record.waitingFor == nil && t.record.attempt == 1 && t.record.slot == 2)
        #expect(t.record.pid == nil, "nothing is spawned before the record is durable")
        #expect(t.at(7, .startRecorded) == [.spawn])
        let effects = t.at(9, .spawned(pid: 4242))
        let start = StartFrame(taskID: "bg_0000000a", sessionID: "ses_0000000b", agent: "explore", provider: "mock", model: nil, description: "d",
                               prompt: "the prompt", resume: false, transcriptPath: nil, workdir: "/work", deadlineMs: 1_009 + 60_000, attempt: 1)
        #expect(effects == [.send(.start(start)), .arm(.ttl, atMs: 60_009), .arm(.stale, atMs: 30_009), .arm(.stability, atMs: 10_009), .recordRunning])
        #expect(t.record.pid == 4242 && t.record.startedMs == 1_009)
    }

    @Test func aSpawnThatFailsEndsTheTaskAsASpawnError() {
        var t = Subject()
        t.at(0, .admitted)
        t.at(0, .slotGranted(slot: 0))
        t.at(0, .startRecorded)
        let outcome = Self.ended(t.at(1, .spawnFailed("cannot start x: no such file")))
        #expect(outcome?.reason == .spawn && outcome?.message == "cannot start x: no such file")
        #expect(t.record.status == .error && t.lifecycle.isEnded)
    }

    @Test func aRawProgramGetsItsPromptOnStdinAndNoFrameRules() {
        var t = Subject(raw: true)
        let effects = t.start(at: 0)
        #expect(effects == [.writeInput(Array("the prompt".utf8)), .closeStdin(afterWrites: true), .arm(.ttl, atMs: 30 * 60_000), .recordRunning])
        #expect(!t.lifecycle.acceptsPrompts)
        t.at(10, .outputLine("hello"))
        #expect(t.record.progress.messages == 1 && t.record.progress.lastMessage == "hello")
        t.at(20, .exited(ExitStatus(code: 0, signal: nil)))
        let outcome = Self.ended(t.at(20, .closed(ChildEnd(rawOutputTail: "hello\n"))))
        #expect(outcome == Outcome(.exit, resultText: "hello\n"))
        #expect(t.record.resultPath == "/state/tasks/bg_0000000a/result.md")
    }

    // MARK: pending

    @Test func queuedTtlCancelsAWaitingTaskAndASlotStopsIt() {
        var expires = Subject { $0.queuedTtl = 500 }
        #expect(expires.at(0, .admitted) == [.arm(.queuedTtl, atMs: 500), .enqueue])
        let effects = expires.at(500, .timerFired(.queuedTtl))
        #expect(effects.first == .withdraw)
        #expect(Self.ended(effects)?.reason == .queuedTtl)
        #expect(Self.ended(effects)?.message?.contains("queuedTtl") == true)

        var starts = Subject { $0.queuedTtl = 500 }
        starts.at(0, .admitted)
        #expect(starts.at(400, .slotGranted(slot: 0)) == [.disarm(.queuedTtl), .recordStart])
        #expect(starts.at(500, .timerFired(.queuedTtl)).isEmpty, "a stopped timer that fires anyway changes nothing")
    }

    @Test func cancellingBeforeTheStartEndsItWithoutAWorker() {
        var pending = Subject()
        pending.at(0, .admitted)
        let effects = pending.at(10, .cancel(.user, message: nil))
        #expect(effects.first == .withdraw && Self.ended(effects)?.reason == .user)

        var starting = Subject()
        starting.at(0, .admitted)
        starting.at(0, .slotGranted(slot: 0))
        #expect(Self.ended(starting.at(1, .cancel(.user, message: nil)))?.reason == .user)
        #expect(starting.at(2, .startRecorded).isEmpty, "the start, once recorded, is not made")
        #expect(!starting.lifecycle.isCancellable)
    }

    // MARK: timers while running

    @Test func ttlEndsTheTaskWithCancelThenSIGTERMThenSIGKILL() {
        var t = Subject { $0.taskTtl = 1_000; $0.killGrace = 3_000; $0.staleTimeout = 0; $0.stablePolls = 0 }
        t.start(at: 0)
        let effects = t.at(1_000, .timerFired(.ttl))
        #expect(effects == [.send(.cancel(reason: "ttl")), .closeStdin(afterWrites: true), .signalGroup(SIGTERM), .arm(.killGrace, atMs: 4_000)])
        #expect(!t.lifecycle.isCancellable, "the outcome is decided")
        #expect(t.at(4_000, .timerFired(.killGrace)) == [.signalGroup(SIGKILL)])
        #expect(t.at(4_001, .exited(ExitStatus(code: 0, signal: SIGKILL))) == [.arm(.drain, atMs: 5_001)])
        let outcome = Self.ended(t.at(4_002, .closed(ChildEnd())))
        #expect(outcome?.reason == .ttl && outcome?.status == .cancelled)
        #expect(t.record.signal == SIGKILL && t.record.exitCode == nil && t.record.endedMs == 1_000 + 4_002)
    }

    @Test func aKillGraceOfZeroKillsAtOnce() {
        var t = Subject { $0.killGrace = 0 }
        t.start()
        #expect(t.at(5, .cancel(.user, message: nil)).contains(.signalGroup(SIGKILL)))
    }

    @Test func staleIsOneTimerReArmedForTheRemainder() {
        var t = Subject { $0.staleTimeout = 300; $0.taskTtl = 0; $0.stablePolls = 0 }
        #expect(t.start().contains(.arm(.stale, atMs: 300)))
        t.at(100, .frame(.heartbeat))
        #expect(t.at(300, .timerFired(.stale)) == [.arm(.stale, atMs: 400)], "quiet only 200 ms: waits for the remainder")
        let effects = t.at(400, .timerFired(.stale))
        #expect(effects.contains(.signalGroup(SIGTERM)))
        #expect(t.at(400, .exited(ExitStatus(code: 0, signal: SIGTERM))).contains(.arm(.drain, atMs: 1_400)))
        let outcome = Self.ended(t.at(401, .closed(ChildEnd())))
        #expect(outcome?.reason == .stale && outcome?.message?.contains("300ms") == true)
    }

    @Test func theStabilityRuleNeedsQuietPollsAMessageAndNoOpenTodos() {
        var t = Subject { $0.minStabilityTime = 10_000; $0.pollInterval = 2_000; $0.stablePolls = 3; $0.staleTimeout = 0; $0.taskTtl = 0 }
        #expect(t.start().contains(.arm(.stability, atMs: 10_000)))
        t.at(1_000, .frame(.message(role: "assistant", text: "my answer")))
        // The first poll sees a new frame since the last: not quiet yet.
        #expect(t.at(10_000, .timerFired(.stability)) == [.arm(.stability, atMs: 12_000)])
        #expect(t.at(12_000, .timerFired(.stability)) == [.arm(.stability, atMs: 14_000)])
        #expect(t.at(14_000, .timerFired(.stability)) == [.arm(.stability, atMs: 16_000)])
        let effects = t.at(16_000, .timerFired(.stability))
        #expect(effects == [.closeStdin(afterWrites: false), .arm(.exitGrace, atMs: 17_000)])
        #expect(Self.ended(t.exitAndClose(at: 16_100)) == Outcome(.stable, resultText: "my answer"))

        // Without a message, or with open todos, it never completes.
        var silent = Subject { $0.minStabilityTime = 0; $0.pollInterval = 1_000; $0.stablePolls = 1; $0.staleTimeout = 0; $0.taskTtl = 0 }
        silent.start()
        for poll in 0..<10 { #expect(silent.at(UInt64(poll * 1_000), .timerFired(.stability)).allSatisfy { if case .arm = $0 { true } else { false } }) }
        var busy = Subject { $0.minStabilityTime = 0; $0.pollInterval = 1_000; $0.stablePolls = 1; $0.staleTimeout = 0; $0.taskTtl = 0 }
        busy.start()
        busy.at(1, .frame(.message(role: "assistant", text: "half way")))
        busy.at(2, .frame(.todo(open: 2, total: 3)))
        for poll in 0..<10 { #expect(Self.ended(busy.at(UInt64(poll * 1_000), .timerFired(.stability))) == nil) }
        #expect(busy.lifecycle.isCancellable)
    }

    @Test func anEarlyIdleIsDeferredAndAnyOtherFrameCancelsTheDeferral() {
        var t = Subject { $0.minIdleTime = 5_000; $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        t.at(500, .frame(.message(role: "assistant", text: "done, I think")))
        #expect(t.at(1_000, .frame(.idle)).contains(.arm(.idle, atMs: 5_000)))
        #expect(t.at(2_000, .frame(.message(role: "assistant", text: "one more thing"))).contains(.disarm(.idle)))
        #expect(t.lifecycle.armedTimers.isEmpty)
        // At or after minIdleTime an idle decides in the same turn.
        let effects = t.at(6_000, .frame(.idle))
        #expect(effects.contains(.arm(.exitGrace, atMs: 7_000)))
        #expect(Self.ended(t.exitAndClose(at: 6_010)) == Outcome(.idle, resultText: "one more thing"))

        var deferred = Subject { $0.minIdleTime = 5_000; $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        deferred.start()
        deferred.at(100, .frame(.message(role: "assistant", text: "all done")))
        deferred.at(200, .frame(.idle))
        #expect(deferred.at(5_000, .timerFired(.idle)).contains(.closeStdin(afterWrites: false)))
        #expect(Self.ended(deferred.exitAndClose(at: 5_010))?.reason == .idle)
    }

    @Test func openTodosBlockIdle() {
        var t = Subject { $0.minIdleTime = 0; $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        t.at(1, .frame(.todo(open: 1, total: 1)))
        #expect(t.at(2, .frame(.idle)) == [.recordProgress])
        t.at(3, .frame(.todo(open: 0, total: 1)))
        #expect(t.at(4, .frame(.idle)).contains(.closeStdin(afterWrites: false)))
    }

    @Test func aDecidedWorkerGetsASecondToLeaveThenIsEnded() {
        var t = Subject { $0.killGrace = 500; $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        #expect(t.at(100, .frame(.result(text: "done", data: nil))).suffix(2) == [.closeStdin(afterWrites: false), .arm(.exitGrace, atMs: 1_100)])
        // It lingers: SIGTERM (no cancel frame, its stdin is closed), then SIGKILL.
        #expect(t.at(1_100, .timerFired(.exitGrace)) == [.signalGroup(SIGTERM), .arm(.killGrace, atMs: 1_600)])
        #expect(t.at(1_600, .timerFired(.killGrace)) == [.signalGroup(SIGKILL)])
        #expect(Self.ended(t.exitAndClose(at: 1_601, signal: SIGKILL)) == Outcome(.result, resultText: "done"), "the status stays the decided one")
    }

    @Test func aWorkerThatClosesStdoutAndLivesOnBreaksTheProtocol() {
        var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        #expect(t.at(50, .outputEnded(cutFrame: nil)) == [.arm(.outputClosed, atMs: 1_050)])
        #expect(t.at(1_050, .timerFired(.outputClosed)).contains(.signalGroup(SIGTERM)))
        #expect(Self.ended(t.exitAndClose(at: 1_060, signal: SIGTERM))?.message?.contains("closed its stdout") == true)
        // One that exits right after closing stdout is judged by its exit.
        var leaves = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        leaves.start()
        leaves.at(50, .outputEnded(cutFrame: nil))
        #expect(leaves.at(60, .exited(ExitStatus(code: 3, signal: nil))) == [.disarm(.outputClosed), .arm(.drain, atMs: 1_060)])
        #expect(Self.ended(leaves.at(61, .closed(ChildEnd())))?.reason == .exitCode)
    }

    @Test func afterTheExitTheDrainGraceAbandonsTheOutputs() {
        var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        t.at(10, .exited(ExitStatus(code: 0, signal: nil)))
        #expect(t.at(1_010, .timerFired(.drain)) == [.abandonOutputs])
    }

    // MARK: how it ends

    @Test func theExitDecidesWhenNothingElseDid() {
        func end(_ code: Int, _ signal: Int32?, cut: String? = nil, message: Bool = true) -> Outcome? {
            var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
            t.start()
            if message { t.at(1, .frame(.message(role: "assistant", text: "last words"))) }
            t.at(2, .outputEnded(cutFrame: cut))
            return Self.ended(t.exitAndClose(at: 3, code: code, signal: signal))
        }
        #expect(end(0, nil) == Outcome(.exit, resultText: "last words"))
        #expect(end(0, nil, message: false) == Outcome(.exit, resultText: ""))
        #expect(end(3, nil)?.reason == .exitCode)
        #expect(end(0, SIGSEGV)?.message?.contains("SIGSEGV") == true)
        #expect(end(0, nil, cut: "stream ended inside the frame at byte 9")?.reason == .protocol)
        #expect(end(0, SIGSEGV, cut: "cut")?.reason == .signal, "a death by signal says more than the frame it cut")
    }

    @Test func aResultReadAfterTheExitStillCounts() {
        var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        t.at(10, .exited(ExitStatus(code: 0, signal: nil)))
        t.at(11, .frame(.result(text: "drained after the exit", data: ["n": 1])))
        let outcome = Self.ended(t.at(12, .closed(ChildEnd())))
        #expect(outcome == Outcome(.result, resultText: "drained after the exit", resultData: ["n": 1]))
        #expect(t.record.extra["result_data"] == ["n": 1])
    }

    @Test func theFirstOutcomeWinsAndNothingChangesAfterTheEnd() {
        var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        t.start()
        t.at(1, .frame(.result(text: "first", data: nil)))
        #expect(t.at(2, .frame(.error(message: "too late", retryable: false))).isEmpty)
        #expect(t.at(3, .cancel(.user, message: nil)).isEmpty)
        #expect(Self.ended(t.exitAndClose(at: 4)) == Outcome(.result, resultText: "first"))
        for event: LifecycleEvent in [.frame(.idle), .cancel(.user, message: nil), .timerFired(.ttl), .exited(ExitStatus(code: 1, signal: nil)),
                                      .closed(ChildEnd()), .prompt("x"), .slotGranted(slot: 1), .startRecorded] {
            #expect(t.at(5, event).isEmpty, "\(event) after the end")
        }
        #expect(t.record.status == .completed)
    }

    @Test func aWorkerErrorSaysWhetherItIsRetryable() {
        var t = Subject()
        t.start()
        t.at(1, .frame(.error(message: "rate limited", retryable: true)))
        #expect(Self.ended(t.exitAndClose(at: 2, code: 1)) == Outcome(.workerError, message: "rate limited (retryable)", retryable: true))
    }

    @Test func promptsReachOnlyARunningUndecidedSession() {
        var t = Subject()
        #expect(!t.lifecycle.acceptsPrompts)
        t.start()
        #expect(t.at(1, .prompt("more")) == [.send(.prompt(text: "more"))])
        t.at(2, .frame(.result(text: "done", data: nil)))
        #expect(!t.lifecycle.acceptsPrompts)
        #expect(t.at(3, .prompt("too late")).isEmpty)
    }

    // MARK: the circuit breaker

    @Test func theBreakerTripsOnToolCallsAndTranscriptBytes() {
        var calls = Subject(maxToolCalls: 2)
        calls.start()
        calls.at(1, .frame(.progress(tool: "read", input: ["path": "a"], text: nil)))
        calls.at(2, .frame(.progress(tool: "read", input: ["path": "b"], text: nil)))
        #expect(calls.lifecycle.isCancellable)
        #expect(calls.at(3, .frame(.progress(tool: "read", input: ["path": "c"], text: nil))).contains(.signalGroup(SIGTERM)))
        #expect(Self.ended(calls.exitAndClose(at: 4, signal: SIGTERM))?.message?.contains("over maxToolCalls 2") == true)

        var bytes = Subject(maxTranscriptBytes: 1_000)
        bytes.start()
        bytes.at(1, .transcriptGrew(bytes: 900))
        #expect(bytes.lifecycle.recordsTranscript)
        #expect(bytes.at(2, .transcriptGrew(bytes: 200)).contains(.signalGroup(SIGTERM)))
        #expect(!bytes.lifecycle.recordsTranscript, "past the cap nothing more is recorded")
    }

    @Test func limitsAreNamedWhenTheyEndATask() {
        var limits = ResourceLimits()
        limits.cpuSeconds = 2
        limits.memory = 64 << 20
        #expect(LimitDiagnosis.hint(signal: SIGXCPU, limits: limits).contains("cpuSeconds limit of 2 s"))
        let explained = LimitDiagnosis.explain(Outcome(.signal, message: "killed"), usage: TaskCgroups.Usage(oomKills: 1), limits: limits)
        #expect(explained.message?.contains("the memory limit of 67108864 bytes was reached") == true)
        #expect(LimitDiagnosis.explain(Outcome(.result, resultText: "x"), usage: TaskCgroups.Usage(oomKills: 1), limits: limits).message == nil)
    }
}

/// Attempts and retries (SPEC 11) on the fake clock.
@Suite struct TaskAttemptTests {
    typealias Subject = TaskLifecycleTests.Subject

    static func retrying(_ retries: Int = 2, on reasons: Set<RetryReason> = RetrySettings.defaultRetryOn,
                         backoff: Backoff = Backoff(initialMs: 2_000, multiplier: 2, maxMs: 60_000, jitter: 0.2)) -> Subject {
        var t = Subject { $0.staleTimeout = 0; $0.stablePolls = 0; $0.taskTtl = 0 }
        let settings = t.lifecycle.settings
        var withRetry = settings
        withRetry.retry = RetryPolicy(retries: retries, retryOn: reasons, backoff: backoff)
        t.lifecycle = TaskLifecycle(record: t.lifecycle.record, settings: withRetry, now: Moment(monotonicMs: 0, wallMs: 1_000))
        return t
    }

    @Test func aRetryableErrorIsTriedAgainAfterItsBackoffAtTheHead() {
        var t = Self.retrying()
        t.start(at: 0)
        t.at(100, .frame(.error(message: "overloaded", retryable: true)))
        t.at(110, .exited(ExitStatus(code: 1, signal: nil)))
        let effects = t.at(120, .closed(ChildEnd(jitter: 0.5)))
        // The slot goes back with the attempt; the next waits 2 s ± 20% (here +10%).
        #expect(effects.contains(.attemptEnded(Outcome(.workerError, message: "overloaded (retryable)", retryable: true))))
        #expect(effects.last == .arm(.retry, atMs: 120 + 2_200))
        #expect(!effects.contains { if case .end = $0 { true } else { false } })
        #expect(t.record.status == .pending && t.record.waitingFor == .retry && t.record.reason == .retry)
        #expect(t.record.attempts.map(\.number) == [1] && t.record.attempts.first?.reason == .workerError)
        #expect(t.at(2_320, .timerFired(.retry)) == [.requeue])
        #expect(t.record.waitingFor == .slot)
        #expect(t.at(2_330, .slotGranted(slot: 0)) == [.recordStart])
        #expect(t.record.attempt == 2 && t.record.reason == nil)
        t.at(2_330, .startRecorded)
        let start = t.at(2_331, .spawned(pid: 77))
        #expect(start.contains { if case .send(.start(let frame)) = $0 { frame.attempt == 2 } else { false } })
        t.at(2_400, .frame(.result(text: "done", data: nil)))
        #expect(TaskLifecycleTests.ended(t.exitAndClose(at: 2_410))?.reason == .result)
        #expect(t.record.attempts.map(\.number) == [1, 2] && t.record.attempts.last?.status == .completed)
    }

    @Test func aRateLimitCoolsThePoolAndItsRetryAfterWinsOverTheBackoff() {
        var t = Self.retrying()
        t.start()
        #expect(t.at(10, .frame(.rateLimit(retryAfterMs: 9_000, scope: .provider, message: "429"))).contains(.rateLimited(retryAfterMs: 9_000, scope: .provider)))
        #expect(t.lifecycle.isCancellable, "the worker may go on after a rate limit")
        t.at(20, .frame(.error(message: "gave up", retryable: false)))
        t.at(30, .exited(ExitStatus(code: 1, signal: nil)))
        let effects = t.at(40, .closed(ChildEnd()))
        #expect(effects.last == .arm(.retry, atMs: 40 + 9_000), "rate_limit is a reason of its own, and its retry-after is later than the backoff")
        #expect(t.lifecycle.lastAttemptRateLimited)
    }

    @Test func aRetryAfterOfDaysWaitsNoLongerThanTheBackoffsMaximum() {
        var t = Self.retrying(backoff: Backoff(initialMs: 2_000, multiplier: 2, maxMs: 300_000, jitter: 0))
        t.start()
        t.at(1, .frame(.rateLimit(retryAfterMs: 7 * 86_400_000, scope: .provider, message: "weekly quota")))
        t.at(2, .frame(.error(message: "quota", retryable: true)))
        #expect(t.exitAndClose(at: 3, code: 1).last == .arm(.retry, atMs: 3 + 300_000))
    }

    @Test func backoffGrowsPerAttemptUpToItsMaximum() {
        let backoff = Backoff(initialMs: 1_000, multiplier: 3, maxMs: 5_000, jitter: 0.5)
        #expect(backoff.delayMs(beforeAttempt: 2, spread: 0) == 1_000)
        #expect(backoff.delayMs(beforeAttempt: 3, spread: 0) == 3_000)
        #expect(backoff.delayMs(beforeAttempt: 4, spread: 0) == 5_000)
        #expect(backoff.delayMs(beforeAttempt: 4, spread: -1) == 2_500)
        #expect(backoff.delayMs(beforeAttempt: 2, spread: 1) == 1_500)
    }

    @Test func attemptsRunOutAndThenTheTaskEnds() {
        var t = Self.retrying(1)
        for attempt in 1...2 {
            if attempt == 1 { t.start(at: 0) } else {
                t.at(10_000, .timerFired(.retry))
                t.at(10_000, .slotGranted(slot: 0))
                t.at(10_000, .startRecorded)
                t.at(10_000, .spawned(pid: 2))
            }
            t.at(UInt64(attempt) * 10_000 + 1, .frame(.error(message: "busy", retryable: true)))
            let effects = t.exitAndClose(at: UInt64(attempt) * 10_000 + 2, code: 1)
            if attempt == 2 { #expect(TaskLifecycleTests.ended(effects)?.reason == .workerError) }
        }
        #expect(t.record.status == .error && t.record.attempts.count == 2)
    }

    @Test func cancelTtlAndReasonsNotListedAreNeverRetried() {
        for event: LifecycleEvent in [.cancel(.user, message: nil), .cancel(.shutdown, message: nil), .timerFired(.ttl)] {
            var t = Self.retrying(5, on: Set(RetryReason.allCases))
            t.lifecycle = TaskLifecycle(record: t.record, settings: {
                var s = t.lifecycle.settings
                s.timers.taskTtl = 1_000
                return s
            }(), now: Moment(monotonicMs: 0, wallMs: 1_000))
            t.start()
            t.at(5, .frame(.rateLimit(retryAfterMs: nil, scope: .provider, message: nil)))
            t.at(1_000, event)
            #expect(TaskLifecycleTests.ended(t.exitAndClose(at: 1_001, signal: SIGTERM)) != nil, "\(event) is never retried")
        }
        var exit = Self.retrying()
        exit.start()
        #expect(TaskLifecycleTests.ended(exit.exitAndClose(at: 5, code: 3))?.reason == .exitCode, "exit_code is not in the default retryOn")
        var listed = Self.retrying(on: [.exitCode])
        listed.start()
        #expect(listed.exitAndClose(at: 5, code: 3).contains { if case .attemptEnded = $0 { true } else { false } })
    }

    @Test func aPendingTaskSaysWhyItWaits() {
        var t = Self.retrying()
        t.at(0, .admitted)
        #expect(t.record.waitingFor == .slot)
        #expect(t.at(1, .waiting(.cooldown)) == [.recordProgress])
        #expect(t.record.waitingFor == .cooldown)
        t.at(2, .waiting(.slot))
        #expect(t.record.waitingFor == .slot)
        t.at(3, .slotGranted(slot: 0))
        #expect(t.record.waitingFor == nil)
        t.at(4, .startRecorded)
        t.at(5, .spawned(pid: 1))
        t.at(6, .frame(.error(message: "x", retryable: true)))
        _ = t.exitAndClose(at: 7, code: 1)
        #expect(t.record.waitingFor == .retry)
        #expect(t.at(8, .waiting(.cooldown)).isEmpty, "a backoff is not a cooldown: it says retry until it is over")
        t.at(8, .moveTo(ModelChoice(provider: "openai", model: "gpt-5", key: "openai/gpt-5", pool: "provider:openai")))
        #expect(t.record.model == "gpt-5" && t.record.pool == "provider:openai")
        t.at(3_000, .timerFired(.retry))
        #expect(t.record.waitingFor == .slot)
        t.at(3_001, .waiting(.cooldown))
        #expect(t.record.waitingFor == .cooldown)
    }
}

import DroverWire
import Glibc

/// What a task's lifecycle needs to know about the task that never changes while it lives.
public struct LifecycleSettings: Sendable, Equatable {
    public var timers: ResolvedTimers
    public var maxToolCalls: Int
    public var maxRepeatedToolCalls: Int
    public var maxTranscriptBytes: Int
    /// A raw program: no frames, so no stale or stability rule; the prompt goes to stdin.
    public var raw: Bool
    /// The prompt is in the raw program's argv, so stdin gets nothing.
    public var promptInArguments: Bool
    public var resume: Bool
    /// The session's transcript, for a resumed worker's start frame.
    public var transcriptPath: String?
    public var workdir: String
    /// For naming the limit a death points to.
    public var limits: ResourceLimits
    /// Where a completed task's result.md is.
    public var resultPath: String?
    /// When an attempt that ended is tried again.
    public var retry: RetryPolicy
    /// The task's own caps on money and tokens.
    public var spendLimits: SpendLimits
    /// Tasks (ids) that must complete before it joins its pool's queue.
    public var dependencies: [String]
    /// It runs in a git worktree made before its first attempt and finished after its end.
    public var usesWorktree: Bool
    /// Its worker is srun: the job may wait in Slurm's queue, and its timers start when it runs.
    public var clustered: Bool

    /// How long a worker whose task is decided may take to exit on its own.
    public static let exitGraceMs = 1000
    /// How long to wait for the end of the output after the exit (a descendant that left the
    /// group may hold the pipes open).
    public static let drainGraceMs = 1000

    public init(timers: ResolvedTimers, maxToolCalls: Int = 0, maxRepeatedToolCalls: Int = 0, maxTranscriptBytes: Int = 0,
                raw: Bool = false, promptInArguments: Bool = false, resume: Bool = false, transcriptPath: String? = nil,
                workdir: String, limits: ResourceLimits = ResourceLimits(), resultPath: String? = nil, retry: RetryPolicy = .none,
                spendLimits: SpendLimits = SpendLimits(), dependencies: [String] = [], usesWorktree: Bool = false,
                clustered: Bool = false)
    {
        self.usesWorktree = usesWorktree
        self.clustered = clustered
        self.spendLimits = spendLimits
        self.dependencies = dependencies
        self.resultPath = resultPath
        self.retry = retry
        self.timers = timers
        self.maxToolCalls = maxToolCalls
        self.maxRepeatedToolCalls = maxRepeatedToolCalls
        self.maxTranscriptBytes = maxTranscriptBytes
        self.raw = raw
        self.promptInArguments = promptInArguments
        self.resume = resume
        self.transcriptPath = transcriptPath
        self.workdir = workdir
        self.limits = limits
    }
}

/// One task's life as a value (SPEC sections 2 and 4): events in, with the time, effects
/// out. It performs no I/O and reads no clock, so every rule is a unit test on a fake clock;
/// `TaskDriver` performs the effects with the loop, the child and the store.
///
/// The phases carry what they need: pending since when, running with its run's state,
/// stopping with the outcome already decided (the child is still going), ended. The record
/// (`TaskSnapshot`) is what task.json shows; the lifecycle keeps its state fields true.
public struct TaskLifecycle: Sendable {
    public private(set) var record: TaskSnapshot
    public let settings: LifecycleSettings
    private var phase: Phase
    private var armed: Set<LifecycleTimer> = []

    enum Phase: Sendable {
        case pending(since: UInt64)
        /// Holds a slot; the record of the start is on its way to the disk.
        case starting
        /// Its worktree is being made; a cancel meanwhile ends it once that is done.
        case preparing(cancelled: Outcome?)
        case running(Run)
        /// The outcome is decided; the worker is leaving (or being made to).
        case stopping(Run, Outcome)
        /// The worker is gone; what it left in its worktree is being committed.
        case finishing(Outcome)
        case ended
    }

    /// A live worker's state, as the completion rules need it.
    struct Run: Sendable {
        var startedAt: UInt64
        var lastFrameAt: UInt64
        var frames = 0
        var framesAtLastPoll = 0
        var quietPolls = 0
        var openTodos = 0
        var lastAssistantText: String?
        var stdinOpen = true
        var outputEnded = false
        /// What the end of the output cut off (a frame's first bytes).
        var cutFrame: String?
        var exit: ExitStatus?
        var lastToolCall = ""
        var repeatedToolCalls = 0
        var transcriptBytes = 0
        /// A `rate_limit` frame came, with its retry-after if it had one.
        var rateLimited = false
        var retryAfterMs: Int?
        /// What the attempt has spent so far.
        var usage = TaskUsage()
        /// srun runs, but Slurm has not started the job: no timer counts yet.
        var clusterPending = false
    }

    /// What the attempts before the running one spent.
    private var endedAttemptsUsage = TaskUsage()
    /// The dependencies that have not completed yet, and whether the task has been admitted
    /// (it joins its pool's queue once both are so).
    private var awaiting: Set<String>
    private var admitted = false
    /// Its worktree exists (made, and not finished yet): the end goes through `finishing`.
    private var worktreeMade = false

    /// The last attempt to end saw a `rate_limit` frame (adaptive limits count the others).
    public private(set) var lastAttemptRateLimited = false

    public init(record: TaskSnapshot, settings: LifecycleSettings, now: Moment) {
        endedAttemptsUsage = record.usage
        awaiting = Set(settings.dependencies)
        var record = record
        record.status = .pending
        // Its first task.json says already what it waits for.
        record.waitingFor = settings.dependencies.isEmpty ? .slot : .dependency
        record.pid = nil
        self.record = record
        self.settings = settings
        phase = .pending(since: now.monotonicMs)
    }

    /// A task that ended before this supervisor started (read back from its folder).
    public init(ended record: TaskSnapshot, settings: LifecycleSettings) {
        awaiting = []
        self.record = record
        self.settings = settings
        phase = .ended
    }

    // MARK: queries

    /// A cancel would change something: the task has not ended and its outcome is not decided.
    public var isCancellable: Bool {
        switch phase {
        case .pending, .starting, .running, .preparing(cancelled: nil): true
        case .preparing, .stopping, .finishing, .ended: false
        }
    }

    /// It holds a slot (from the grant until its end).
    public var holdsSlot: Bool {
        switch phase {
        case .starting, .preparing, .running, .stopping, .finishing: true
        case .pending, .ended: false
        }
    }

    /// A follow-up prompt can be delivered now.
    public var acceptsPrompts: Bool {
        guard case .running(let run) = phase else { return false }
        return !settings.raw && run.stdinOpen
    }

    /// Past maxTranscriptBytes nothing more is recorded: the task is being ended.
    public var recordsTranscript: Bool {
        let limit = settings.maxTranscriptBytes
        switch phase {
        case .running(let run), .stopping(let run, _): return limit == 0 || run.transcriptBytes <= limit
        default: return true
        }
    }

    public var isEnded: Bool {
        if case .ended = phase { return true }
        return false
    }

    /// Timers armed now (for the driver's consistency checks and the tests).
    public var armedTimers: Set<LifecycleTimer> { armed }

    // MARK: events

    public mutating func handle(_ event: LifecycleEvent, at now: Moment) -> [LifecycleEffect] {
        var effects: [LifecycleEffect] = []
        handle(event, at: now, into: &effects)
        return effects
    }

    /// The same, appending to `effects` (the driver reuses one buffer: a flood of frames
    /// would otherwise allocate an array per frame).
    public mutating func handle(_ event: LifecycleEvent, at now: Moment, into effects: inout [LifecycleEffect]) {
        switch event {
        case .admitted:
            guard case .pending = phase, !admitted else { break }
            admitted = true
            if awaiting.isEmpty {
                joinQueue(now, &effects)
            } else if record.waitingFor != .dependency {
                record.waitingFor = .dependency
                effects.append(.recordProgress)
            }
        case .dependencyEnded(let id, let status, let reason, let text):
            dependencyEnded(id, status, reason, text, now, &effects)
        case .slotGranted(let slot):
            guard case .pending = phase else { break }
            disarm(.queuedTtl, &effects)
            record.attempt += 1
            record.slot = slot
            record.status = .running
            record.waitingFor = nil
            record.reason = nil
            phase = .starting
            effects.append(.recordStart)
        case .startRecorded:
            guard case .starting = phase else { break }
            if settings.usesWorktree && !worktreeMade {
                phase = .preparing(cancelled: nil)
                effects.append(.prepareWorkdir)
            } else {
                effects.append(.spawn)
            }
        case .workdirReady(let worktree):
            guard case .preparing(let cancelled) = phase else { break }
            worktreeMade = true
            record.extra["worktree"] = worktree
            effects.append(.recordProgress)
            if let cancelled {
                end(cancelled, now, &effects)
            } else {
                phase = .starting
                effects.append(.spawn)
            }
        case .workdirFailed(let message):
            guard case .preparing(let cancelled) = phase else { break }
            end(cancelled ?? Outcome(.spawn, message: message), now, &effects)
        case .clusterJob(let jobID, let state):
            clusterJob(jobID, state, now, &effects)
        case .workdirFinished(let worktree):
            guard case .finishing(let outcome) = phase else { break }
            worktreeMade = false
            record.extra["worktree"] = worktree
            end(outcome, now, &effects)
        case .spawned(let pid):
            guard case .starting = phase else { break }
            started(pid: pid, now, &effects)
        case .spawnFailed(let message):
            guard case .starting = phase else { break }
            end(Outcome(.spawn, message: message), now, &effects)
        case .frame(let frame, let bytes):
            if bytes > 0 { transcriptGrew(bytes, now, &effects) }
            received(frame, now, &effects)
        case .outputLine(let text, let bytes):
            if bytes > 0 { transcriptGrew(bytes, now, &effects) }
            receivedLine(text, now, &effects)
        case .transcriptGrew(let bytes):
            transcriptGrew(bytes, now, &effects)
        case .badOutput(let problem):
            if case .running = phase { decide(Outcome(.protocol, message: "bad frame from the worker: \(problem)"), now, &effects) }
        case .outputEnded(let cutFrame):
            outputEnded(cutFrame: cutFrame, now, &effects)
        case .exited(let status):
            exited(status, now, &effects)
        case .closed(let child):
            closed(child, now, &effects)
        case .timerFired(let timer):
            guard armed.remove(timer) != nil else { break }  // stopped meanwhile
            fired(timer, now, &effects)
        case .cancel(let reason, let message):
            cancel(reason, message, now, &effects)
        case .prompt(let text):
            if acceptsPrompts { effects.append(.send(.prompt(text: text))) }
        case .waiting(let reason):
            guard case .pending = phase, record.waitingFor != reason, record.waitingFor != .retry || !armed.contains(.retry) else { break }
            record.waitingFor = reason
            effects.append(.recordProgress)
        case .usage(let usage):
            spent(usage, now, &effects)
        case .moveTo(let choice):
            guard case .pending = phase else { break }
            record.provider = choice.provider
            record.model = choice.model
            record.key = choice.key
            record.pool = choice.pool
            effects.append(.recordProgress)
        }
    }

    // MARK: waiting for the pool and for dependencies

    /// Joins its pool's queue; queuedTtl counts from here, not from a wait for dependencies.
    private mutating func joinQueue(_ now: Moment, _ effects: inout [LifecycleEffect]) {
        if settings.timers.queuedTtl > 0 { arm(.queuedTtl, at: now.monotonicMs + UInt64(settings.timers.queuedTtl), &effects) }
        if record.waitingFor == .dependency {
            record.waitingFor = .slot
            effects.append(.recordProgress)
        }
        effects.append(.enqueue)
    }

    /// A dependency ended: its result goes into the prompt where `{result:ID}` asks for it,
    /// and the last one to complete lets the task queue; one that did not complete cancels it.
    private mutating func dependencyEnded(_ id: String, _ status: TaskStatus, _ reason: TaskReason?, _ text: String?, _ now: Moment,
                                          _ effects: inout [LifecycleEffect]) {
        guard case .pending = phase, awaiting.remove(id) != nil else { return }
        guard status == .completed else {
            let how = reason.map { "\(status.rawValue) (\($0.rawValue))" } ?? status.rawValue
            end(Outcome(.dependency, message: "its dependency \(id) ended \(how)"), now, &effects)
            return
        }
        let placeholder = "{result:\(id)}"
        if record.prompt.contains(placeholder) {
            record.prompt = record.prompt.replacing(placeholder, with: text ?? "")
            effects.append(.recordProgress)
        }
        if awaiting.isEmpty && admitted { joinQueue(now, &effects) }
    }

    // MARK: timers

    private mutating func arm(_ timer: LifecycleTimer, at ms: UInt64, _ effects: inout [LifecycleEffect]) {
        armed.insert(timer)
        effects.append(.arm(timer, atMs: ms))
    }

    private mutating func disarm(_ timer: LifecycleTimer, _ effects: inout [LifecycleEffect]) {
        if armed.remove(timer) != nil { effects.append(.disarm(timer)) }
    }

    /// The timers of a live, undecided run.
    private static let runTimers: [LifecycleTimer] = [.ttl, .stale, .stability, .idle, .outputClosed]

    private mutating func fired(_ timer: LifecycleTimer, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        let timers = settings.timers
        switch (timer, phase) {
        case (.queuedTtl, .pending):
            cancel(.queuedTtl, "waited longer than queuedTtl \(DurationText.format(milliseconds: timers.queuedTtl)) for a slot", now, &effects)
        case (.ttl, .running):
            decide(Outcome(.ttl, message: "ran longer than its ttl of \(DurationText.format(milliseconds: timers.taskTtl))"), now, &effects)
        case (.stale, .running(let run)):
            // One timer, re-armed for the remainder when frames came meanwhile.
            let quiet = Int(now.monotonicMs - run.lastFrameAt)
            if quiet >= timers.staleTimeout {
                decide(Outcome(.stale, message: "no frame from the worker for \(DurationText.format(milliseconds: quiet)) (staleTimeout \(DurationText.format(milliseconds: timers.staleTimeout)))"), now, &effects)
            } else {
                arm(.stale, at: run.lastFrameAt + UInt64(timers.staleTimeout), &effects)
            }
        case (.stability, .running(var run)):
            run.quietPolls = run.frames == run.framesAtLastPoll ? run.quietPolls + 1 : 0
            run.framesAtLastPoll = run.frames
            phase = .running(run)
            if run.quietPolls >= timers.stablePolls, let text = run.lastAssistantText, run.openTodos == 0 {
                decide(Outcome(.stable, resultText: text), now, &effects)
            } else {
                arm(.stability, at: now.monotonicMs + UInt64(timers.pollInterval), &effects)
            }
        case (.idle, .running(let run)):
            if run.openTodos == 0 { decide(Outcome(.idle, resultText: run.lastAssistantText ?? ""), now, &effects) }
        case (.outputClosed, .running(let run)) where run.exit == nil:
            decide(Outcome(.protocol, message: "the worker closed its stdout but did not exit within \(DurationText.format(milliseconds: LifecycleSettings.exitGraceMs))"), now, &effects)
        case (.exitGrace, .stopping(let run, _)) where run.exit == nil:
            terminate(cancelReason: nil, now, &effects)
        case (.killGrace, .stopping(let run, _)) where run.exit == nil:
            effects.append(.signalGroup(SIGKILL))
            // srun killed forwards nothing: the job itself is cancelled.
            if settings.clustered { effects.append(.cancelClusterJob) }
        case (.drain, .running(let run)), (.drain, .stopping(let run, _)):
            if run.exit != nil { effects.append(.abandonOutputs) }
        case (.retry, .pending):
            record.waitingFor = .slot
            effects.append(.requeue)
        default:
            break
        }
    }

    // MARK: running

    private mutating func started(pid: Int32, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        record.pid = pid
        record.startedMs = now.wallMs
        var run = Run(startedAt: now.monotonicMs, lastFrameAt: now.monotonicMs)
        let timers = settings.timers
        if settings.raw {
            if !settings.promptInArguments { effects.append(.writeInput(Array(record.prompt.utf8))) }
            effects.append(.closeStdin(afterWrites: true))
            run.stdinOpen = false
        } else {
            effects.append(.send(.start(StartFrame(
                taskID: record.id, sessionID: record.sessionID, agent: record.agent, provider: record.provider, model: record.model,
                description: record.description, prompt: record.prompt, resume: settings.resume,
                transcriptPath: settings.resume ? settings.transcriptPath : nil, workdir: settings.workdir,
                deadlineMs: timers.taskTtl > 0 ? now.wallMs + Int64(timers.taskTtl) : nil, attempt: record.attempt))))
        }
        if settings.clustered {
            // Slurm may hold the job in its queue: the timers wait for it to run.
            run.clusterPending = true
            record.waitingFor = .cluster
            phase = .running(run)
        } else {
            phase = .running(run)
            armRunTimers(now, &effects)
        }
        effects.append(.recordRunning)
    }

    private mutating func armRunTimers(_ now: Moment, _ effects: inout [LifecycleEffect]) {
        let timers = settings.timers
        if timers.taskTtl > 0 { arm(.ttl, at: now.monotonicMs + UInt64(timers.taskTtl), &effects) }
        // Raw programs send no frames, so silence says nothing about them.
        if !settings.raw {
            if timers.staleTimeout > 0 { arm(.stale, at: now.monotonicMs + UInt64(timers.staleTimeout), &effects) }
            if timers.stablePolls > 0 && timers.pollInterval > 0 {
                arm(.stability, at: now.monotonicMs + UInt64(timers.minStabilityTime), &effects)
            }
        }
    }

    /// What squeue says of the task's job: its id and state, and, once it runs, the timers.
    private mutating func clusterJob(_ jobID: String, _ state: String, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .running, .stopping: break
        default: return
        }
        let shown: JSONValue = ["job_id": .string(jobID), "state": .string(state)]
        if record.extra["slurm"] != shown {
            record.extra["slurm"] = shown
            effects.append(.recordProgress)
        }
        if state != "PENDING" && state != "CONFIGURING" { jobRuns(now, &effects) }
    }

    /// The job runs (squeue says so, or its worker spoke): the task's time starts now.
    private mutating func jobRuns(_ now: Moment, _ effects: inout [LifecycleEffect]) {
        guard case .running(var run) = phase, run.clusterPending else { return }
        run.clusterPending = false
        run.startedAt = now.monotonicMs
        run.lastFrameAt = now.monotonicMs
        phase = .running(run)
        // started_at is when the worker started, not when srun began to wait for the cluster.
        record.startedMs = now.wallMs
        record.waitingFor = nil
        effects.append(.recordProgress)
        armRunTimers(now, &effects)
    }

    private mutating func received(_ frame: WorkerFrame, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        jobRuns(now, &effects)
        // Frames after the decision are in the transcript, and change nothing.
        guard case .running(var run) = phase else { return }
        phase = .ended  // held by `run` alone meanwhile, so its strings change in place
        run.frames += 1
        run.lastFrameAt = now.monotonicMs
        if frame != .idle { disarm(.idle, &effects) }
        var decision: Outcome?
        switch frame {
        case .message(let role, let text):
            record.progress.messages += 1
            record.progress.lastMessage = String(text.prefix(500))
            if role == "assistant" { run.lastAssistantText = text }
        case .progress(let tool, let input, _):
            record.progress.toolCalls += 1
            record.progress.lastTool = tool
            decision = breakerTripped(&run, tool: tool ?? "", input: input ?? .null)
        case .todo(let open, _):
            run.openTodos = open
        case .idle:
            if run.openTodos == 0 {
                // SPEC 4: an early idle is deferred to minIdleTime, not dropped.
                let elapsed = Int(now.monotonicMs - run.startedAt)
                if elapsed >= settings.timers.minIdleTime {
                    decision = Outcome(.idle, resultText: run.lastAssistantText ?? "")
                } else {
                    disarm(.idle, &effects)
                    arm(.idle, at: run.startedAt + UInt64(settings.timers.minIdleTime), &effects)
                }
            }
        case .result(let text, let data):
            decision = Outcome(.result, resultText: text ?? run.lastAssistantText ?? "", resultData: data)
        case .error(let message, let retryable):
            let text = message ?? "the worker reported an error"
            decision = Outcome(.workerError, message: retryable ? text + " (retryable)" : text, retryable: retryable)
        case .rateLimit(let retryAfterMs, let scope, _):
            run.rateLimited = true
            if let retryAfterMs { run.retryAfterMs = max(run.retryAfterMs ?? 0, retryAfterMs) }
            effects.append(.rateLimited(retryAfterMs: retryAfterMs, scope: scope))
        case .log(let level, let text):
            effects.append(.log(level: level, text: text))
        case .usage(let figures):
            effects.append(.usageReported(figures))
        case .hello, .heartbeat, .unknown:
            break  // activity, kept in the transcript
        }
        record.progress.lastUpdateMs = now.wallMs
        phase = .running(run)
        effects.append(.recordProgress)
        if let decision { decide(decision, now, &effects) }
    }

    private mutating func receivedLine(_ text: String, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        jobRuns(now, &effects)
        guard case .running = phase else { return }
        record.progress.messages += 1
        record.progress.lastMessage = String(text.prefix(500))
        record.progress.lastUpdateMs = now.wallMs
        effects.append(.recordProgress)
    }

    /// Which circuit-breaker rule a tool call trips, if any, with its numbers.
    private func breakerTripped(_ run: inout Run, tool: String, input: JSONValue) -> Outcome? {
        let call = tool + " " + JSONWriter.string(input)
        if call == run.lastToolCall {
            run.repeatedToolCalls += 1
        } else {
            run.lastToolCall = call
            run.repeatedToolCalls = 1
        }
        let calls = record.progress.toolCalls
        if settings.maxToolCalls > 0 && calls > settings.maxToolCalls {
            return Outcome(.circuitBreaker, message: "circuit breaker: \(calls) tool calls, over maxToolCalls \(settings.maxToolCalls)")
        }
        if settings.maxRepeatedToolCalls > 0 && run.repeatedToolCalls > settings.maxRepeatedToolCalls {
            return Outcome(.circuitBreaker, message: "circuit breaker: the same tool call (\(call.prefix(200))) \(run.repeatedToolCalls) times in a row, over maxRepeatedToolCalls \(settings.maxRepeatedToolCalls)")
        }
        return nil
    }

    private mutating func transcriptGrew(_ bytes: Int, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .running(var run):
            run.transcriptBytes += bytes
            phase = .running(run)
            let limit = settings.maxTranscriptBytes
            if limit > 0 && run.transcriptBytes > limit {
                decide(Outcome(.circuitBreaker, message: "circuit breaker: the transcript reached \(run.transcriptBytes) bytes, over maxTranscriptBytes \(limit)"), now, &effects)
            }
        case .stopping(var run, let outcome):
            run.transcriptBytes += bytes
            phase = .stopping(run, outcome)
        default:
            break
        }
    }

    /// A framed worker that closed its stdout can send nothing more, not even a result. If
    /// it has not exited shortly after, it is broken: left alone it would hold its slot until
    /// staleTimeout, or the stability rule would take its last message for a result.
    private mutating func outputEnded(cutFrame: String?, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .running(var run):
            run.outputEnded = true
            run.cutFrame = cutFrame
            phase = .running(run)
            if !settings.raw && run.exit == nil {
                arm(.outputClosed, at: now.monotonicMs + UInt64(LifecycleSettings.exitGraceMs), &effects)
            }
        case .stopping(var run, let outcome):
            run.outputEnded = true
            phase = .stopping(run, outcome)
        default:
            break
        }
    }

    private mutating func exited(_ status: ExitStatus, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        for timer in Self.runTimers + [.exitGrace, .killGrace] { disarm(timer, &effects) }
        let drainAt = now.monotonicMs + UInt64(LifecycleSettings.drainGraceMs)
        switch phase {
        case .running(var run):
            run.exit = status
            run.stdinOpen = false
            phase = .running(run)
        case .stopping(var run, let outcome):
            run.exit = status
            run.stdinOpen = false
            phase = .stopping(run, outcome)
        default:
            return
        }
        arm(.drain, at: drainAt, &effects)
    }

    // MARK: deciding and ending

    private mutating func cancel(_ reason: TaskReason, _ message: String?, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .pending:
            effects.append(.withdraw)
            end(Outcome(reason, message: message ?? "cancelled while pending (\(reason.rawValue))"), now, &effects)
        case .starting:
            // The worker was never started: the start record, if written, is followed by this end.
            end(Outcome(reason, message: message ?? "cancelled before it started (\(reason.rawValue))"), now, &effects)
        case .preparing(cancelled: nil):
            // git is making the worktree: it is removed again once made.
            phase = .preparing(cancelled: Outcome(reason, message: message ?? "cancelled before it started (\(reason.rawValue))"))
        case .running:
            decide(Outcome(reason, message: message ?? "cancelled (\(reason.rawValue))"), now, &effects)
        case .preparing, .stopping, .finishing, .ended:
            break
        }
    }

    /// Decides how the running task ends: once, by the first of result, idle, stability,
    /// error, a rule, a cancel or (at the close) the exit.
    private mutating func decide(_ outcome: Outcome, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        guard case .running(let run) = phase else { return }
        for timer in Self.runTimers { disarm(timer, &effects) }
        phase = .stopping(run, outcome)
        guard run.exit == nil else { return }  // it has gone already: its close ends the task
        switch outcome.status {
        case .cancelled:
            terminate(cancelReason: outcome.reason, now, &effects)
        case .error where outcome.reason == .protocol:
            terminate(cancelReason: nil, now, &effects)
        default:
            // Done by its own account: close stdin and let it leave; end it if it lingers.
            closeStdin(afterWrites: false, &effects)
            arm(.exitGrace, at: now.monotonicMs + UInt64(LifecycleSettings.exitGraceMs), &effects)
        }
    }

    /// `cancel` frame (for cancellations) and SIGTERM to the group, SIGKILL after killGrace.
    private mutating func terminate(cancelReason: TaskReason?, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        guard case .stopping(let run, _) = phase else { return }
        if let cancelReason, !settings.raw, run.stdinOpen {
            effects.append(.send(.cancel(reason: cancelReason.rawValue)))
            closeStdin(afterWrites: true, &effects)
        } else {
            closeStdin(afterWrites: false, &effects)
        }
        if settings.timers.killGrace == 0 {
            effects.append(.signalGroup(SIGKILL))
        } else {
            effects.append(.signalGroup(SIGTERM))
            arm(.killGrace, at: now.monotonicMs + UInt64(settings.timers.killGrace), &effects)
        }
    }

    private mutating func closeStdin(afterWrites: Bool, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .running(var run) where run.stdinOpen:
            run.stdinOpen = false
            phase = .running(run)
        case .stopping(var run, let outcome) where run.stdinOpen:
            run.stdinOpen = false
            phase = .stopping(run, outcome)
        default:
            return
        }
        effects.append(.closeStdin(afterWrites: afterWrites))
    }

    /// The child is reaped and its pipes are closed: the task ends now.
    private mutating func closed(_ child: ChildEnd, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        let run: Run
        var outcome: Outcome
        switch phase {
        case .running(let r):
            run = r
            outcome = Self.outcomeFromExit(run, raw: settings.raw, rawOutputTail: child.rawOutputTail, limits: settings.limits)
        case .stopping(let r, let decided):
            run = r
            outcome = decided
        default:
            return
        }
        let exit = run.exit ?? ExitStatus(code: -1, signal: nil)
        outcome = LimitDiagnosis.explain(outcome, usage: child.cgroup, limits: settings.limits)
        // srun gone after a failure or a cancel: the job must not outlive it on the cluster.
        if settings.clustered && outcome.status != .completed { effects.append(.cancelClusterJob) }
        record.exitCode = exit.signal == nil ? exit.code : nil
        record.signal = exit.signal
        if let peak = child.cgroup?.peakMemoryKiB ?? child.peakMemoryKiB { record.extra["peak_rss_kib"] = .number(Double(peak)) }
        if let peak = child.cgroup?.peakProcesses { record.extra["peak_processes"] = .number(Double(peak)) }
        if let path = child.cgroupPath { record.extra["cgroup"] = .string(path) }
        record.attempts.append(AttemptRecord(
            number: record.attempt, provider: record.provider, model: record.model, startedMs: record.startedMs, endedMs: now.wallMs,
            status: outcome.status, reason: outcome.reason, error: outcome.status == .completed ? nil : outcome.message, usage: run.usage))
        endedAttemptsUsage = endedAttemptsUsage + run.usage
        lastAttemptRateLimited = run.rateLimited
        if let why = Self.retryReason(outcome, run), settings.retry.retryOn.contains(why), record.attempt <= settings.retry.retries {
            retry(after: outcome, run, jitter: child.jitter, now, &effects)
        } else {
            end(outcome, now, &effects)
        }
    }

    /// The attempt's totals so far: the task's usage is the sum over its attempts, and a
    /// task that passes its own cap is cancelled(budget) at once.
    private mutating func spent(_ usage: TaskUsage, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        switch phase {
        case .running(var run):
            phase = .ended
            run.usage = usage
            phase = .running(run)
        case .stopping(var run, let outcome):
            run.usage = usage
            phase = .stopping(run, outcome)
        default:
            return
        }
        record.usage = endedAttemptsUsage + usage
        effects.append(.recordProgress)
        if let passed = settings.spendLimits.passed(by: record.usage) { decide(Outcome(.budget, message: passed), now, &effects) }
    }

    /// Why an attempt that ended this way could be tried again; nil when it never is
    /// (completed, or ended by a cancel, a ttl, a budget, a shutdown or a rule).
    static func retryReason(_ outcome: Outcome, _ run: Run) -> RetryReason? {
        switch outcome.reason {
        case .result, .idle, .stable, .exit, .user, .ttl, .queuedTtl, .circuitBreaker, .shutdown, .budget, .spawn, .retry:
            return nil
        case .lost:
            return .lost
        default:
            break
        }
        if run.rateLimited { return .rateLimit }
        switch outcome.reason {
        case .workerError: return outcome.retryable ? .retryable : nil
        case .exitCode: return .exitCode
        case .signal: return .signal
        case .stale: return .stale
        case .protocol: return .protocol
        default: return nil
        }
    }

    /// Back to pending until the backoff (or the worker's retry-after, whichever is later)
    /// has passed; then the task queues again at the head of its pool.
    private mutating func retry(after outcome: Outcome, _ run: Run, jitter: Double, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        for timer in LifecycleTimer.allCases where armed.contains(timer) { effects.append(.disarm(timer)) }
        armed = []
        // A worker's retry-after counts up to the backoff's maximum: past it, the attempts run
        // out rather than hold the task for days.
        let retryAfter = min(run.retryAfterMs ?? 0, settings.retry.backoff.maxMs)
        let delay = max(settings.retry.backoff.delayMs(beforeAttempt: record.attempt + 1, spread: jitter), retryAfter)
        phase = .pending(since: now.monotonicMs)
        record.status = .pending
        record.reason = .retry
        record.waitingFor = .retry
        record.error = nil
        record.pid = nil
        record.exitCode = nil
        record.signal = nil
        effects.append(.attemptEnded(outcome))
        arm(.retry, at: now.monotonicMs + UInt64(delay), &effects)
    }

    static func outcomeFromExit(_ run: Run, raw: Bool, rawOutputTail: String?, limits: ResourceLimits) -> Outcome {
        let exit = run.exit ?? ExitStatus(code: -1, signal: nil)
        if let signal = exit.signal {
            return Outcome(.signal, message: "the worker was killed by signal \(signal) (\(signalName(signal)))" + LimitDiagnosis.hint(signal: signal, limits: limits))
        }
        if !raw, let cut = run.cutFrame { return Outcome(.protocol, message: "bad frame from the worker: \(cut)") }
        if exit.code != 0 { return Outcome(.exitCode, message: "the worker exited with code \(exit.code)") }
        if raw { return Outcome(.exit, resultText: rawOutputTail ?? "") }
        return Outcome(.exit, resultText: run.lastAssistantText ?? "")
    }

    /// The one way into a terminal state (through `finishing` while a worktree exists).
    private mutating func end(_ outcome: Outcome, _ now: Moment, _ effects: inout [LifecycleEffect]) {
        for timer in LifecycleTimer.allCases where armed.contains(timer) { effects.append(.disarm(timer)) }
        armed = []
        if worktreeMade {
            phase = .finishing(outcome)
            effects.append(.finishWorkdir(outcome))
            return
        }
        phase = .ended
        record.status = outcome.status
        record.reason = outcome.reason
        record.error = outcome.status == .completed ? nil : outcome.message
        record.endedMs = now.wallMs
        record.waitingFor = nil
        if outcome.status == .completed { record.resultPath = settings.resultPath }
        if let data = outcome.resultData { record.extra["result_data"] = data }
        effects.append(.end(outcome))
    }
}

import DroverWire

/// When an event happens: the monotonic time timers count in, and the wall time records show.
/// Tests pass a fake clock's readings.
public struct Moment: Sendable, Equatable {
    public var monotonicMs: UInt64
    public var wallMs: Int64

    public init(monotonicMs: UInt64, wallMs: Int64) {
        self.monotonicMs = monotonicMs
        self.wallMs = wallMs
    }
}

/// The timers of one task (SPEC sections 2 and 4). Each is armed at most once at a time.
public enum LifecycleTimer: Sendable, Hashable, CaseIterable {
    /// Pending longer than queuedTtl: cancelled(queued_ttl).
    case queuedTtl
    /// Running longer than taskTtl: cancelled(ttl).
    case ttl
    /// No frame for staleTimeout: cancelled(stale).
    case stale
    /// The stability rule's poll.
    case stability
    /// An idle frame deferred to minIdleTime.
    case idle
    /// A framed worker closed its stdout and has not exited since.
    case outputClosed
    /// Decided: the worker may take this long to exit by itself.
    case exitGrace
    /// SIGTERM sent: SIGKILL when this runs out.
    case killGrace
    /// Exited: how long to wait for the end of its output.
    case drain
    /// An attempt ended retryably: the next one may queue when this fires.
    case retry
}

/// How the worker's process ended, as the reaper saw it.
public struct ExitStatus: Sendable, Equatable {
    public var code: Int
    public var signal: Int32?

    public init(code: Int, signal: Int32?) {
        self.code = code
        self.signal = signal
    }
}

/// What the driver learnt once the child was reaped and its pipes closed.
public struct ChildEnd: Sendable, Equatable {
    /// A raw program's result: the end of its stdout.
    public var rawOutputTail: String?
    /// What the task's cgroup recorded, when it had one.
    public var cgroup: TaskCgroups.Usage?
    /// The task's cgroup folder, when it had one.
    public var cgroupPath: String?
    public var peakMemoryKiB: Int?
    /// Where in its jitter a retry's backoff falls (-1...1), drawn by the driver.
    public var jitter: Double

    public init(rawOutputTail: String? = nil, cgroup: TaskCgroups.Usage? = nil, cgroupPath: String? = nil, peakMemoryKiB: Int? = nil,
                jitter: Double = 0) {
        self.jitter = jitter
        self.rawOutputTail = rawOutputTail
        self.cgroup = cgroup
        self.cgroupPath = cgroupPath
        self.peakMemoryKiB = peakMemoryKiB
    }
}

/// Everything that can happen to a task, in the order the driver sees it.
public enum LifecycleEvent: Sendable, Equatable {
    /// The task joins its pool's queue (its submission is on disk where that matters).
    case admitted
    /// A slot of its pool is its own now.
    case slotGranted(slot: Int)
    /// The record that this attempt starts is durable: the worker may start.
    case startRecorded
    case spawned(pid: Int32)
    case spawnFailed(String)
    /// A frame from a framed worker, and the bytes its transcript line took.
    case frame(WorkerFrame, recordedBytes: Int = 0)
    /// A line of a raw program's stdout, and the bytes its transcript line took.
    case outputLine(String, recordedBytes: Int = 0)
    /// Bytes added to the transcript otherwise (frames to the worker); maxTranscriptBytes counts them all.
    case transcriptGrew(bytes: Int)
    /// The worker's stdout broke the protocol (a bad frame): what was wrong.
    case badOutput(String)
    /// The worker's stdout reached its end; `cutFrame` says what was cut off, if anything.
    case outputEnded(cutFrame: String?)
    case exited(ExitStatus)
    /// The child is reaped and every handle is closed.
    case closed(ChildEnd)
    case timerFired(LifecycleTimer)
    case cancel(TaskReason, message: String?)
    /// A follow-up prompt for the live session.
    case prompt(String)
    /// Why the pending task waits now (its pool started or ended a cooldown).
    case waiting(WaitReason)
    /// The next attempt runs on another model (a fallback while its own pool cools down).
    case moveTo(ModelChoice)
    /// The running attempt's totals so far, priced (from its latest `usage` frame).
    case usage(TaskUsage)
    /// A task it waits for ended (SPEC 13); `resultText` is its result when it completed.
    case dependencyEnded(taskID: String, status: TaskStatus, reason: TaskReason?, resultText: String?)
    /// The task's worktree exists (its branch and folder): `worktree` is what task.json shows.
    case workdirReady(worktree: JSONValue)
    /// squeue's word on the task's Slurm job (state as squeue spells it: PENDING, RUNNING...).
    case clusterJob(jobID: String, state: String)
    /// The worktree could not be made; nothing was created.
    case workdirFailed(String)
    /// What the worker left is on the branch and the folder is gone (or kept): the record.
    case workdirFinished(worktree: JSONValue)
}

/// A model for an attempt, with the pool it counts against.
public struct ModelChoice: Sendable, Equatable {
    public var provider: String?
    public var model: String?
    public var key: String
    public var pool: String

    public init(provider: String?, model: String?, key: String, pool: String) {
        self.provider = provider
        self.model = model
        self.key = key
        self.pool = pool
    }
}

/// What the driver must do, in order.
public enum LifecycleEffect: Sendable, Equatable {
    /// Make the record that the attempt starts durable, then report `startRecorded`.
    case recordStart
    /// Start the worker, then report `spawned` or `spawnFailed`.
    case spawn
    case send(SupervisorFrame)
    /// Raw bytes for stdin (a raw program's prompt).
    case writeInput([UInt8])
    case closeStdin(afterWrites: Bool)
    case signalGroup(Int32)
    /// Stop waiting for the end of stdout and stderr.
    case abandonOutputs
    case arm(LifecycleTimer, atMs: UInt64)
    case disarm(LifecycleTimer)
    /// A worker's `log` frame, for its log.
    case log(level: String, text: String)
    /// The worker runs: write its record (pid, start time) and report it.
    case recordRunning
    /// The record changed in a way worth writing with the next batch.
    case recordProgress
    /// Join the pool's queue (at its tail, by priority).
    case enqueue
    /// Leave the pool's queue.
    case withdraw
    /// The worker was refused for a rate limit: its pool (or its provider's pools) cool down.
    case rateLimited(retryAfterMs: Int?, scope: WorkerFrame.RateLimitScope)
    /// The attempt ended and another follows: release the slot, record the attempt and
    /// the wait (the `retry` timer is armed with it).
    case attemptEnded(Outcome)
    /// Join the pool's queue again, at its head.
    case requeue
    /// The worker reported its attempt's totals: price them, count them, then say `usage`.
    case usageReported(WorkerFrame.UsageFigures)
    /// `scancel` the task's Slurm job (srun is gone or going without taking it along).
    case cancelClusterJob
    /// Make the task's worktree (branch and folder), then report `workdirReady` or `workdirFailed`.
    case prepareWorkdir
    /// The task is decided: commit what its worktree holds, write changes.diff, remove the
    /// folder, then report `workdirFinished`.
    case finishWorkdir(Outcome)
    /// The task is over: release its slot, write its files, report once they are durable.
    case end(Outcome)
}

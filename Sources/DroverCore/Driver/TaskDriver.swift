import DroverWire
import Glibc

/// What a task runs, decided when it is submitted.
struct TaskPlan {
    let agent: AgentConfig
    let arguments: [String]
    let env: [String: String]
    let cwd: String
    /// The cwd is a fresh folder that drover creates before the start.
    let cwdIsPrivate: Bool
    let limits: ResourceLimits
    let pool: PoolAssignment
    /// A worktree task's repository, base and branch.
    let worktree: WorktreePlan?
    /// Its worker runs through srun.
    let slurm: LauncherSettings?
    /// Its worker runs under bubblewrap.
    let sandbox: SandboxSettings?
    /// The launching client's values of the agent's passEnv names (never written to a file).
    var clientPassEnv: [String: String] = [:]
}

/// One task of the table: its lifecycle, and while it runs, its child. It turns what the
/// loop and the child report into lifecycle events, and performs the effects that come
/// back. Events that arise while effects are performed (a spawn reporting its pid) queue
/// behind them, so the lifecycle always sees one event at a time.
final class TaskDriver {
    private unowned let supervisor: Supervisor
    private(set) var lifecycle: TaskLifecycle
    let plan: TaskPlan
    /// What the task was made from (nil for an ended task whose request could not be read).
    let request: TaskRequest?
    /// Members of the task's first journal line (a batch row's identity).
    let journalTags: JSONObject
    var grant: SlotGrant?
    /// When the slot of the attempt now starting was granted (monotonic ns).
    var grantedAtNs: UInt64 = 0
    /// The pool its next attempt counts against (a fallback model's, after a move).
    var pool: PoolAssignment
    /// Its folder has been asked for (it is made with the batch of its first file).
    var hasFolder = false
    /// The record as last reported (what clients see until the next report).
    var published: TaskSnapshot?
    /// Its worktree, with the base resolved once it is made.
    var worktree: WorktreePlan?

    private var child: ChildProcess?
    private var framed: FramedOutput?
    private var raw: RawOutput?
    private var timers: [LifecycleTimer: LoopTimer] = [:]
    /// The task's own cgroup folder, when its limits are also cgroup limits (TaskCgroups).
    private var cgroup: String?
    private var queued: [LifecycleEvent] = []
    private var effects: [LifecycleEffect] = []
    private var feeding = false
    private let transcriptPath: String
    private let sessionPath: String
    private let stderrPath: String
    private(set) var outputPaused = false

    init(supervisor: Supervisor, lifecycle: TaskLifecycle, plan: TaskPlan, request: TaskRequest?, journalTags: JSONObject = [:]) {
        self.supervisor = supervisor
        self.lifecycle = lifecycle
        self.plan = plan
        pool = plan.pool
        worktree = plan.worktree
        self.request = request
        self.journalTags = journalTags
        let store = supervisor.store
        transcriptPath = store.transcriptFile(lifecycle.record.id)
        sessionPath = store.sessionFile(lifecycle.record.sessionID)
        stderrPath = store.stderrFile(lifecycle.record.id)
    }

    var id: String { lifecycle.record.id }
    /// Bytes written to the worker's stdin that it has not read; nil without a worker.
    var queuedInputBytes: Int? { child?.pendingWriteBytes }
    var record: TaskSnapshot { lifecycle.record }
    private var store: ResultStore { supervisor.store }

    /// Hands an event to the lifecycle and performs what it asks for.
    func feed(_ event: LifecycleEvent) {
        supervisor.loop.assertOnLoopThread()
        queued.append(event)
        guard !feeding else { return }
        feeding = true
        var index = 0
        while index < queued.count {
            let next = queued[index]
            index += 1
            lifecycle.handle(next, at: supervisor.now(), into: &effects)
            // Performing may queue events for this task again: they wait for the next round.
            let round = effects
            effects.removeAll(keepingCapacity: true)
            for effect in round { perform(effect) }
        }
        queued.removeAll(keepingCapacity: true)
        feeding = false
    }

    // MARK: effects

    private func perform(_ effect: LifecycleEffect) {
        switch effect {
        case .recordStart:
            supervisor.recordStart(of: self)
        case .spawn:
            spawn()
        case .send(let frame):
            var bytes: [UInt8] = []
            JSONWriter.writeObject(frame.object, into: &bytes)
            child?.write(FrameEncoder.header(length: UInt32(bytes.count)) + bytes)
            if let size = recordTranscript(direction: "out", objectBytes: bytes) { feed(.transcriptGrew(bytes: size)) }
        case .writeInput(let bytes):
            child?.write(bytes)
        case .closeStdin(let afterWrites):
            if afterWrites { child?.closeStdinAfterWrites() } else { child?.closeStdin() }
        case .signalGroup(let signal):
            child?.signalGroup(signal)
        case .abandonOutputs:
            child?.abandonOutputs()
        case .arm(let timer, let atMs):
            let loop = supervisor.loop
            let delay = atMs > loop.nowMs ? Int(atMs - loop.nowMs) : 0
            let handle = timers[timer] ?? LoopTimer(loop: loop)
            timers[timer] = handle
            handle.start(after: delay) { [weak self] in self?.feed(.timerFired(timer)) }
        case .disarm(let timer):
            timers[timer]?.stop()
        case .log(let level, let text):
            store.append(stderrPath, Array("[worker \(level)] \(text)\n".utf8), owner: id)
        case .recordRunning:
            supervisor.recordRunning(self)
            if plan.slurm != nil { supervisor.watchClusterJob(self) }
        case .recordProgress:
            supervisor.progressChanged(self)
        case .enqueue:
            supervisor.enqueue(self, atHead: false)
        case .withdraw:
            supervisor.pools.withdraw(taskID: id)
        case .rateLimited(let retryAfterMs, let scope):
            supervisor.rateLimited(self, retryAfterMs: retryAfterMs, scope: scope)
        case .attemptEnded(let outcome):
            stopChild()
            supervisor.attemptEnded(self, outcome)
        case .requeue:
            supervisor.requeue(self)
        case .cancelClusterJob:
            supervisor.cancelClusterJob(self)
        case .prepareWorkdir:
            supervisor.prepareWorktree(self)
        case .finishWorkdir:
            stopChild()
            supervisor.finishWorktree(self)
        case .usageReported(let figures):
            supervisor.usageReported(self, figures)
        case .end(let outcome):
            for timer in timers.values { timer.stop() }
            timers = [:]
            stopChild()
            supervisor.finish(self, outcome)
        }
    }

    /// The attempt's child is gone: forget it and its output.
    private func stopChild() {
        child = nil
        framed = nil
        raw = nil
        outputPaused = false
    }

    private func spawn() {
        switch supervisor.spawnWorker(for: self) {
        case .failure(let failure):
            feed(.spawnFailed(failure.message))
        case .success(let started):
            child = started.child
            cgroup = started.cgroup
            if lifecycle.settings.raw { raw = RawOutput() } else { framed = FramedOutput(maxFrameBytes: supervisor.config.maxFrameBytes) }
            started.child.onStdout = { [weak self] bytes in self?.received(bytes) }
            started.child.onStderr = { [weak self] bytes in
                guard let self else { return }
                self.store.append(self.stderrPath, Array(bytes), owner: self.id)
            }
            started.child.onStdoutEnd = { [weak self] in self?.outputEnded() }
            started.child.onExit = { [weak self] status, signal in
                guard let self else { return }
                self.supervisor.onTrace?(self.id, .exited)
                self.feed(.exited(self.workerStatus(code: Int(status), signal: signal)))
            }
            started.child.onClosed = { [weak self] in self?.closed() }
            // Timers count from after the spawn: a ttl never ends a task before started_at + ttl.
            supervisor.loop.refreshTime()
            supervisor.onTrace?(id, .spawned)
            if let measure = supervisor.onMeasure {
                measure(.workerSpawned(pool: pool.id, seconds: Double(Clock.monotonicNs() - grantedAtNs) / 1e9))
            }
            feed(.spawned(pid: started.child.pid))
        }
    }

    /// How the worker ended. bwrap exits with 128 + N when the worker inside died of
    /// signal N: that is the signal, as it would be without the sandbox.
    private func workerStatus(code: Int, signal: Int32) -> ExitStatus {
        if signal != 0 { return ExitStatus(code: code, signal: signal) }
        if plan.sandbox != nil, (129...192).contains(code) { return ExitStatus(code: code, signal: Int32(code - 128)) }
        return ExitStatus(code: code, signal: nil)
    }

    // MARK: the child's output

    private func received(_ bytes: UnsafeRawBufferPointer) {
        if raw != nil {
            for line in raw!.consume(bytes) { receivedLine(line) }
        } else if framed != nil {
            for item in framed!.consume(bytes) {
                switch item {
                case .frame(let frame, let payload):
                    let size = recordTranscript(direction: "in", objectBytes: payload) ?? 0
                    if case .result = frame { supervisor.onTrace?(id, .resultFrame) }
                    feed(.frame(frame, recordedBytes: size))
                case .invalidFrame(let payload, let problem):
                    if let size = recordTranscript(direction: "in", objectBytes: payload) { feed(.transcriptGrew(bytes: size)) }
                    feed(.badOutput(problem))
                case .broken(let problem):
                    feed(.badOutput(problem))
                }
            }
        }
        // SPEC 16.5: a worker whose output outpaces the disk waits for it.
        if !outputPaused, store.unwrittenBytes(of: id) > supervisor.config.maxBufferedBytes, let child {
            child.pauseStdout()
            outputPaused = true
        }
    }

    /// The store has written enough of this task's output: read on.
    func outputDrained() {
        guard outputPaused else { return }
        outputPaused = false
        child?.resumeStdout()
    }

    private func receivedLine(_ text: String) {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(["type": "message", "role": "assistant", "text": .string(text)], into: &bytes)
        feed(.outputLine(text, recordedBytes: recordTranscript(direction: "in", objectBytes: bytes) ?? 0))
    }

    private func outputEnded() {
        if let line = raw?.finishLine() { receivedLine(line) }
        feed(.outputEnded(cutFrame: framed?.cutFrame()))
    }

    private func closed() {
        // Output abandoned after the drain grace ends without its end of file.
        if let line = raw?.finishLine() { receivedLine(line) }
        var end = ChildEnd(rawOutputTail: raw?.result, peakMemoryKiB: child?.peakMemoryKiB, jitter: Double.random(in: -1...1))
        if let folder = cgroup {
            end.cgroup = TaskCgroups.usage(of: folder)
            end.cgroupPath = folder
            TaskCgroups.remove(folder, loop: supervisor.loop)
            cgroup = nil
        }
        feed(.closed(end))
    }

    /// Adds a frame to the task's transcript and its session's, as
    /// `{"t": ms, "dir": ..., ...frame}` on one line.
    /// Returns the line's size, for maxTranscriptBytes (nil when nothing was recorded).
    private func recordTranscript(direction: String, objectBytes: [UInt8]) -> Int? {
        guard lifecycle.recordsTranscript, let line = TranscriptLine.build(direction: direction, objectBytes: objectBytes, wallMs: Clock.wallMs()) else { return nil }
        supervisor.onTranscriptLine?(id, line)
        store.append(transcriptPath, line, owner: id)
        store.append(sessionPath, line, owner: id)
        return line.count
    }
}

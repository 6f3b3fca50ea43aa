import DroverWire
import Glibc

/// A task in the table: its recorded state, how to run it, and while it runs, its run.
final class SupervisedTask {
    var snapshot: TaskSnapshot
    let agent: AgentConfig
    let arguments: [String]
    let timers: ResolvedTimers
    let breaker: BreakerSettings
    let limits: ResourceLimits
    let env: [String: String]
    let cwd: String
    /// The cwd is a fresh folder that drover creates before the start.
    let cwdIsPrivate: Bool
    let resume: Bool
    let poolAssignment: PoolAssignment
    var grant: SlotGrant?
    var queuedTimer: LoopTimer?
    var run: TaskRun?
    /// The task's own cgroup folder, when its limits are also cgroup limits (TaskCgroups).
    var cgroup: String?
    /// Its folder has been asked for (it is made with the batch of its first file).
    var hasFolder = false

    init(snapshot: TaskSnapshot, agent: AgentConfig, arguments: [String], timers: ResolvedTimers, breaker: BreakerSettings,
         limits: ResourceLimits, env: [String: String], cwd: String, cwdIsPrivate: Bool, resume: Bool, pool: PoolAssignment)
    {
        self.limits = limits
        self.snapshot = snapshot
        self.agent = agent
        self.arguments = arguments
        self.timers = timers
        self.breaker = breaker
        self.cwdIsPrivate = cwdIsPrivate
        self.env = env
        self.cwd = cwd
        self.resume = resume
        poolAssignment = pool
    }
}

/// The supervisor: the task table and its state machine (SPEC section 2), the slot pools,
/// and the runs of the tasks that hold a slot. Everything here happens on the loop thread.
/// Data flows one way: spawn → frames → state machine → store → reports.
public final class Supervisor {
    public let loop: EventLoop
    public let config: DroverConfig
    public let store: ResultStore
    public let launch: WorkerLaunch
    /// Where tasks without a `cwd` run.
    public var workingDirectory: String
    /// Whether a queued task gets its folder and task.json at once. The daemon needs them
    /// to queue its pending tasks again after a restart. `drover run` queues again from its
    /// manifest (`--resume`), so it turns this off: a row's files then appear when it
    /// leaves the queue, which spares a folder, a file and a rename per row on the disk
    /// while the batch runs. events.jsonl records the pending state either way.
    public var writesQueuedTasks = true
    /// How long a started task runs before its running task.json is written; nil writes it
    /// at once (the daemon, whose restart reads it to find the task's process). `drover run`
    /// sets this: a row that ends sooner goes from no task.json straight to its final one.
    public var runningFileDelayMs: Int?
    /// Started tasks whose running task.json waits for `runningFileDelayMs`, oldest first.
    private var unwrittenStarts: [(id: String, dueMs: UInt64)] = []
    private var unwrittenStartHead = 0
    private lazy var startWriteTimer: LoopTimer = {
        let timer = LoopTimer(loop: loop)
        timer.unref()
        return timer
    }()
    let pools: SlotPools
    private var tasks: [String: SupervisedTask] = [:]
    private var dirty: Set<String> = []
    private var granted: [SlotGrant] = []
    private var startingGranted = false
    private var draining = false
    private var running: Set<String> = []

    /// Every state change, in order, once its files are on disk (terminal ones only after
    /// the child is reaped too).
    public var onReport: (TaskSnapshot) -> Void = { _ in }

    /// Moments in a task's life, as they happen on the loop (for benchmarks and debugging).
    public enum TraceEvent: Sendable {
        case spawned, resultFrame, exited
    }
    public var onTrace: ((String, TraceEvent) -> Void)?

    /// Called synchronously as a task enters its terminal state, before its slot is handed
    /// on (its files are not written yet: use `onReport` to tell others).
    public var onEnded: ((TaskSnapshot) -> Void)?

    /// Every transcript line as it is recorded (for following a task's log live).
    public var onTranscriptLine: ((String, [UInt8]) -> Void)?

    public init(loop: EventLoop, config: DroverConfig, store: ResultStore, launch: WorkerLaunch, workingDirectory: String = FileSystem.currentDirectory()) {
        self.loop = loop
        self.config = config
        self.store = store
        self.launch = launch
        self.workingDirectory = workingDirectory
        pools = SlotPools(globalLimit: config.globalConcurrency)
        store.beforeCommit = { [weak self] in self?.writeDirtyTasks() }
    }

    // MARK: queries

    public func snapshot(_ taskID: String) -> TaskSnapshot? { tasks[taskID]?.snapshot }
    /// Tasks whose worker was started and has not ended.
    public var runningCount: Int { running.count }
    public var pendingCount: Int { pools.totalWaiting }
    /// Slots in use and waiters, per pool.
    public var poolUsage: [SlotPools.Usage] { pools.usage }
    /// Slots in use under the global cap (every pool's together).
    public var slotsInUse: Int { pools.totalRunning }

    // MARK: submit

    /// Queues a task; it starts at once when its pool has a free slot.
    @discardableResult
    public func submit(_ request: TaskRequest) throws(SubmitError) -> TaskSnapshot {
        var id = TaskIdentifiers.newTaskID()
        while tasks[id] != nil || FileSystem.exists(store.taskDirectory(id)) { id = TaskIdentifiers.newTaskID() }
        let task = try makeTask(request, id: id, sessionID: request.sessionID ?? TaskIdentifiers.newSessionID(), createdMs: Clock.wallMs())
        persist(task, writingTaskFile: writesQueuedTasks)
        enqueue(task)
        return task.snapshot
    }

    /// Queues again a task that was pending when an earlier supervisor stopped, keeping its
    /// id, session and creation time. Its task.json is already on disk.
    @discardableResult
    public func restore(pending snapshot: TaskSnapshot, request: TaskRequest) throws(SubmitError) -> TaskSnapshot {
        let task = try makeTask(request, id: snapshot.id, sessionID: snapshot.sessionID, createdMs: snapshot.createdMs)
        task.hasFolder = true
        enqueue(task)
        return task.snapshot
    }

    private func makeTask(_ request: TaskRequest, id: String, sessionID: String, createdMs: Int64) throws(SubmitError) -> SupervisedTask {
        let agent: AgentConfig
        var arguments: [String]
        if let command = request.command {
            guard !command.isEmpty else { throw .emptyCommand }
            agent = DroverConfig.commandAgent
            arguments = command
        } else {
            let name = request.agent ?? ""
            guard let configured = config.agents[name] else { throw .unknownAgent(name, known: config.agents.keys.sorted()) }
            agent = configured
            arguments = configured.command
        }
        if arguments.isEmpty { throw .emptyCommand }
        let provider = request.provider ?? agent.provider
        let model = request.model ?? agent.model
        let key = model.map { model in provider.map { "\($0)/\(model)" } ?? model } ?? agent.name
        let timers = request.timers.over(agent.timers.over(config.timers)).resolved
        let pool = config.pool(provider: provider, model: model, key: key)
        let privateFolder = request.workdirPerTask ?? agent.workdirPerTask
        let cwd = privateFolder ? store.taskDirectory(id) + "/work" : FileSystem.absolute(request.cwd ?? agent.cwd ?? workingDirectory)
        var snapshot = TaskSnapshot(
            id: id, sessionID: sessionID, agent: agent.name, provider: provider, model: model, key: key,
            description: request.description ?? String(request.prompt.split(separator: "\n").first ?? Substring(arguments.joined(separator: " "))),
            prompt: request.prompt, createdMs: createdMs, ttlMs: timers.taskTtl, pool: pool.id)
        snapshot.extra = request.extra
        var kept = request
        kept.cwd = cwd
        snapshot.extra["request"] = .object(kept.json())
        var env = agent.env
        for (name, value) in request.env { env[name] = value }
        let breaker = request.breaker.over(agent.breaker.over(config.breaker))
        let task = SupervisedTask(snapshot: snapshot, agent: agent, arguments: arguments, timers: timers, breaker: breaker,
                                  limits: request.limits.over(agent.limits), env: env,
                                  cwd: cwd, cwdIsPrivate: privateFolder, resume: request.resume, pool: pool)
        tasks[id] = task
        return task
    }

    private func enqueue(_ task: SupervisedTask) {
        let id = task.snapshot.id
        if let grant = pools.request(taskID: id, in: task.poolAssignment) {
            startGranted([grant])
        } else if task.timers.queuedTtl > 0 {
            let timers = task.timers
            let timer = LoopTimer(loop: loop)
            timer.start(after: timers.queuedTtl) { [weak self] in
                self?.cancel(id, reason: .queuedTtl, message: "waited longer than queuedTtl \(DurationText.format(milliseconds: timers.queuedTtl)) for a slot")
            }
            task.queuedTimer = timer
        }
    }

    // MARK: a running session

    /// Sends a follow-up prompt to a running framed worker.
    public func deliverPrompt(_ taskID: String, text: String) -> PromptDelivery {
        guard let run = tasks[taskID]?.run else { return .notRunning }
        return run.deliver(prompt: text)
    }

    /// Stops starting tasks: pending ones stay pending (for the next supervisor).
    public func stopStartingTasks() {
        draining = true
    }

    // MARK: cancel

    /// Cancels a pending task at once, or a running one (it is reported cancelled once its
    /// process group is reaped). Returns false when the task is unknown or already ended.
    @discardableResult
    public func cancel(_ taskID: String, reason: TaskReason = .user, message: String? = nil) -> Bool {
        guard let task = tasks[taskID], !task.snapshot.status.isTerminal else { return false }
        if let run = task.run {
            return run.decide(Outcome(reason, message: message ?? "cancelled (\(reason.rawValue))"))
        }
        guard task.snapshot.status == .pending else { return false }
        pools.withdraw(taskID: taskID)
        end(task, Outcome(reason, message: message ?? "cancelled while pending (\(reason.rawValue))"))
        return true
    }

    /// Ids of tasks that have not ended, oldest first.
    public var openTaskIDs: [String] {
        tasks.values.filter { !$0.snapshot.status.isTerminal }.sorted { $0.snapshot.createdMs < $1.snapshot.createdMs }.map(\.snapshot.id)
    }

    /// Cancels every task that has not ended: pending ones first, so that slots freed by
    /// running ones are not handed to them.
    public func cancelAll(reason: TaskReason = .user, message: String? = nil) {
        let open = tasks.values.filter { !$0.snapshot.status.isTerminal }.sorted { $0.snapshot.createdMs < $1.snapshot.createdMs }
        for task in open where task.snapshot.status == .pending { cancel(task.snapshot.id, reason: reason, message: message) }
        for task in open where task.snapshot.status == .running { cancel(task.snapshot.id, reason: reason, message: message) }
    }

    // MARK: starting

    /// Starts granted tasks one after another; a start that fails at once frees its slot,
    /// whose grant joins the same list instead of recursing.
    private func startGranted(_ grants: [SlotGrant]) {
        granted.append(contentsOf: grants)
        guard !startingGranted else { return }
        startingGranted = true
        while !granted.isEmpty {
            let grant = granted.removeFirst()
            guard !draining else { continue }
            if let task = tasks[grant.taskID] { start(task, grant) }
        }
        startingGranted = false
    }

    private func start(_ task: SupervisedTask, _ grant: SlotGrant) {
        task.grant = grant
        task.queuedTimer?.stop()
        task.queuedTimer = nil
        task.snapshot.slot = grant.slot
        let snapshot = task.snapshot
        let values: [String: String] = [
            "prompt": snapshot.prompt, "prompt_file": store.taskDirectory(snapshot.id) + "/prompt.txt",
            "task_id": snapshot.id, "session_id": snapshot.sessionID, "agent": snapshot.agent,
            "provider": snapshot.provider ?? "", "model": snapshot.model ?? "", "workdir": task.cwd,
        ]
        if task.cwdIsPrivate {
            do {
                try FileSystem.makeDirectories(task.cwd)
            } catch {
                end(task, Outcome(.spawn, message: "cannot create the task's working folder: \(error)"))
                return
            }
        }
        if task.arguments.contains(where: { $0.contains("{prompt_file}") }) {
            do {
                try store.createTaskDirectoryNow(snapshot.id)
                try FileSystem.writeFile(values["prompt_file"]!, Array(snapshot.prompt.utf8))
            } catch {
                end(task, Outcome(.spawn, message: "cannot write the prompt file: \(error)"))
                return
            }
        }
        let argv = WorkerLaunch.fillPlaceholders(task.arguments, values: values)
        guard let program = launch.locate(argv[0]) else {
            end(task, Outcome(.spawn, message: "cannot start \(argv[0]): not found beside drover (\(launch.programDirectories.joined(separator: ", "))) or on PATH"))
            return
        }
        guard FileSystem.isDirectory(task.cwd) else {
            end(task, Outcome(.spawn, message: "cannot start \(argv[0]): its working folder \(task.cwd) does not exist"))
            return
        }
        let depth = (Int(launch.environment["DROVER_DEPTH"] ?? "0") ?? 0) + 1
        let environment = launch.childEnvironment(
            passEnv: task.agent.passEnv, taskEnv: task.env,
            taskVariables: [
                "DROVER_TASK_ID": snapshot.id, "DROVER_SESSION_ID": snapshot.sessionID, "DROVER_SLOT": String(grant.slot),
                "DROVER_DEPTH": String(depth), "DROVER_AGENT": snapshot.agent,
            ])
        var spec = SpawnSpec(executable: program, arguments: argv, environment: environment, workingDirectory: task.cwd)
        if !task.limits.isEmpty {
            // Limits are set between fork and exec by a helper that then becomes the worker.
            guard let helper = launch.locate("drover-limits") else {
                end(task, Outcome(.spawn, message: "cannot apply the task's limits: drover-limits not found beside drover or on PATH"))
                return
            }
            spec.executable = helper
            task.cgroup = TaskCgroups.make(taskID: snapshot.id, limits: task.limits)
            let joining = task.cgroup.map { ["--cgroup", $0] } ?? []
            spec.arguments = ["drover-limits"] + joining + task.limits.helperArguments + ["--", program] + argv.dropFirst()
        }
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(loop: loop, spec: spec)
        } catch {
            if let folder = task.cgroup { TaskCgroups.remove(folder, loop: loop) }
            end(task, Outcome(.spawn, message: error.description))
            return
        }
        task.snapshot.status = .running
        running.insert(snapshot.id)
        task.snapshot.startedMs = Clock.wallMs()
        task.snapshot.pid = child.pid
        onTrace?(snapshot.id, .spawned)
        if let delay = runningFileDelayMs {
            persist(task, writingTaskFile: false)  // the folder is made now: the run's files go in it
            unwrittenStarts.append((snapshot.id, loop.nowMs + UInt64(max(0, delay))))
            if !startWriteTimer.isActive { startWriteTimer.start(after: delay) { [weak self] in self?.writeDueStarts() } }
        } else {
            persist(task)
        }
        let run = TaskRun(supervisor: self, task: task, child: child, promptInArguments: WorkerLaunch.usesPrompt(task.arguments))
        task.run = run
        run.begin()
    }

    // MARK: state changes

    /// The one way into a terminal state. Called once per task: the run's outcome is
    /// decided once, and a pending task is ended only if it is still pending.
    func end(_ task: SupervisedTask, _ outcome: Outcome, exitCode: Int? = nil, signal: Int32? = nil) {
        precondition(!task.snapshot.status.isTerminal, "task \(task.snapshot.id) ended twice")
        task.queuedTimer?.stop()
        task.queuedTimer = nil
        task.snapshot.status = outcome.status
        task.snapshot.reason = outcome.reason
        task.snapshot.error = outcome.status == .completed ? nil : outcome.message
        task.snapshot.endedMs = Clock.wallMs()
        task.snapshot.exitCode = exitCode
        task.snapshot.signal = signal
        if outcome.status == .completed {
            task.snapshot.resultPath = store.resultFile(task.snapshot.id)
            store.writeResult(task.snapshot.id, text: outcome.resultText ?? "")
        }
        if let data = outcome.resultData { task.snapshot.extra["result_data"] = data }
        task.run = nil
        running.remove(task.snapshot.id)
        dirty.remove(task.snapshot.id)
        persist(task)
        onEnded?(task.snapshot)
        if let grant = task.grant {
            task.grant = nil
            startGranted(pools.release(grant))
        }
    }

    /// The task's worker did something worth showing in task.json; written with the batch.
    func progressChanged(_ task: SupervisedTask) {
        dirty.insert(task.snapshot.id)
    }

    /// Writes the running task.json of tasks that have run for `runningFileDelayMs` and
    /// are still running, then waits for the next one due.
    private func writeDueStarts() {
        loop.refreshTime()
        let now = loop.nowMs
        while unwrittenStartHead < unwrittenStarts.count, unwrittenStarts[unwrittenStartHead].dueMs <= now {
            let id = unwrittenStarts[unwrittenStartHead].id
            unwrittenStartHead += 1
            if let task = tasks[id], task.snapshot.status == .running { dirty.insert(id) }
        }
        if unwrittenStartHead == unwrittenStarts.count {
            unwrittenStarts.removeAll(keepingCapacity: true)
            unwrittenStartHead = 0
        } else {
            if unwrittenStartHead > 1024 {
                unwrittenStarts.removeFirst(unwrittenStartHead)
                unwrittenStartHead = 0
            }
            let wait = unwrittenStarts[unwrittenStartHead].dueMs - now
            startWriteTimer.start(after: Int(wait)) { [weak self] in self?.writeDueStarts() }
        }
    }

    private func writeDirtyTasks() {
        for id in dirty {
            if let task = tasks[id] { store.writeTask(task.snapshot) }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Records a state change: task.json (when `writingTaskFile`; its folder first, made
    /// once the task leaves the queue even without it), a line in events.jsonl, and a report
    /// once both are on disk.
    private func persist(_ task: SupervisedTask, writingTaskFile: Bool = true) {
        let snapshot = task.snapshot
        if !task.hasFolder && (writingTaskFile || snapshot.status != .pending) {
            store.makeTaskDirectory(snapshot.id)
            task.hasFolder = true
        }
        if writingTaskFile { store.writeTask(snapshot) }
        store.appendEvent(snapshot, atMs: Clock.wallMs())
        store.whenWritten { [weak self] in self?.onReport(snapshot) }
    }
}

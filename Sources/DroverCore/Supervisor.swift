import DroverWire
import Glibc

/// How a supervisor records what its tasks do: the daemon and `drover run` differ.
public struct PersistencePolicy: Sendable {
    /// Whether a queued task gets its folder and task.json at once, and joins its pool's
    /// queue only once they are on disk. The daemon needs this: its restart queues pending
    /// tasks again from their task.json, and it acknowledges a launch only when it is
    /// durable. `drover run` queues again from its manifest (`--resume`), so its rows' files
    /// appear when they leave the queue, which spares a folder, a file and a rename per row
    /// while the batch runs. events.jsonl records the pending state either way.
    public var recordsQueuedTasks: Bool
    /// How long a started task runs before its running task.json is written; nil writes it
    /// at once (the daemon: `status` reads it). A row that ends sooner goes from no
    /// task.json straight to its final one.
    public var runningFileDelayMs: Int?
    /// Whether a task that ended keeps its whole record in memory. The daemon keeps only its
    /// row (`TaskRow`) and reads task.json back when asked, so its memory follows what it
    /// runs, not how many tasks the folder has seen; a batch reports every row at its end.
    public var holdsEndedTasks = true

    public static let daemon = PersistencePolicy(recordsQueuedTasks: true, runningFileDelayMs: nil, holdsEndedTasks: false)
    public static let batch = PersistencePolicy(recordsQueuedTasks: false, runningFileDelayMs: 100)
}

/// The supervisor: the one task table, the slot pools, and the drivers of the tasks.
/// Everything here happens on the loop thread. Data flows one way: spawn → events →
/// lifecycle → effects → store → reports.
public final class Supervisor {
    public let loop: EventLoop
    public internal(set) var config: DroverConfig
    public let store: ResultStore
    public let launch: WorkerLaunch
    public let policy: PersistencePolicy
    /// Where tasks without a `cwd` run.
    public var workingDirectory: String
    let pools: SlotPools
    var tasks: [String: TaskDriver] = [:]
    /// Ended tasks whose drivers are let go (`holdsEndedTasks` false): their rows.
    var ended: [String: TaskRow] = [:]
    /// Every task id, oldest first, and each session's.
    var order: [String] = []
    var sessions: [String: [String]] = [:]
    private var dirty: Set<String> = []
    var granted: [SlotGrant] = []
    private var startingGranted = false
    var draining = false
    /// Tasks holding a slot.
    var running: Set<String> = []
    /// For each task, the tasks that wait for it to complete (SPEC 13).
    private var dependents: [String: [String]] = [:]
    /// git, for worktree tasks (nil when it is not on PATH).
    public lazy var git = Git(environment: launch.environment)
    /// Per repository, the changes to its worktree list, one at a time.
    var worktreeJobs: [String: SerialJobs] = [:]
    /// Slurm's queue and cancel commands, for workers through srun.
    lazy var squeue = HelperProgram("squeue", environment: launch.environment)
    lazy var scancel = HelperProgram("scancel", environment: launch.environment)
    /// Tasks whose Slurm job is not known to run yet.
    var clusterWatched: Set<String> = []
    var clusterPolling = false
    lazy var clusterTimer: LoopTimer = {
        let timer = LoopTimer(loop: loop)
        timer.unref()
        return timer
    }()
    /// Started tasks whose running task.json waits for `runningFileDelayMs`, oldest first.
    private var unwrittenStarts: [(id: String, dueMs: UInt64)] = []
    private var unwrittenStartHead = 0
    private lazy var startWriteTimer: LoopTimer = {
        let timer = LoopTimer(loop: loop)
        timer.unref()
        return timer
    }()

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

    /// A pool's cooldown began or ended (it is in events.jsonl too).
    public var onPoolEvent: ((PoolEvent) -> Void)?

    /// Attempts, spawn times, retries and spending as they happen (the daemon's metrics).
    public var onMeasure: ((SupervisorMeasure) -> Void)?
    var cooldownTimers: [String: LoopTimer] = [:]

    /// Spending against the config's budgets (SPEC 12), rebuilt from usage.jsonl.
    public internal(set) var budgets: Budgets
    /// Tasks whose budget has no room now, in the order they were held back.
    var budgetWaiters: [TaskDriver] = []
    lazy var budgetTimer = LoopTimer(loop: loop)
    var budgetRecheckAtMs: Int64?

    public init(loop: EventLoop, config: DroverConfig, store: ResultStore, launch: WorkerLaunch, policy: PersistencePolicy = .daemon,
                workingDirectory: String = FileSystem.currentDirectory())
    {
        self.loop = loop
        self.config = config
        self.store = store
        self.launch = launch
        self.policy = policy
        self.workingDirectory = workingDirectory
        pools = SlotPools(globalLimit: config.globalConcurrency, adaptive: config.adaptiveConcurrency)
        budgets = Budgets(budgets: config.budgets)
        // Spending windows survive restarts: what usage.jsonl says was spent still counts.
        for line in UsageLine.read(store.folder) { budgets.record(line) }
        store.beforeCommit = { [weak self] in self?.writeDirtyTasks() }
        store.drainedBelow = config.maxBufferedBytes / 2
        store.onDrained = { [weak self] id in self?.tasks[id]?.outputDrained() }
    }

    /// The loop's time brought up to date, so timers armed now and times recorded now agree.
    func now() -> Moment {
        loop.refreshTime()
        return Moment(monotonicMs: loop.nowMs, wallMs: Clock.wallMs())
    }

    // MARK: queries

    /// A task's record as it is now (live progress included).
    public func snapshot(_ taskID: String) -> TaskSnapshot? { tasks[taskID]?.record ?? endedRecord(taskID)?.snapshot }

    /// A task as clients may see it: live while it runs, but an end only once it is reported
    /// (its files are durable) — until then, the state reported before.
    public func view(_ taskID: String) -> TaskSnapshot? {
        guard let task = tasks[taskID] else { return endedRecord(taskID)?.snapshot }
        if task.record.status.isTerminal, let published = task.published, !published.status.isTerminal {
            var shown = published
            shown.progress = task.record.progress
            return shown
        }
        return task.record
    }

    /// Every task id, oldest first.
    public var taskIDs: [String] { order }

    /// A session's tasks, oldest first; nil for an unknown session.
    public func taskIDs(inSession session: String) -> [String]? { sessions[session] }

    /// The request a task was made from (to continue its session, or run it again).
    public func request(of taskID: String) -> TaskRequest? {
        guard let task = tasks[taskID] else { return endedRecord(taskID)?.request }
        return task.request
    }

    /// Tasks holding a slot (started, or about to start).
    public var runningCount: Int { running.count }
    public var pendingCount: Int { pools.totalWaiting + budgetWaiters.count }
    /// Slots in use and waiters, per pool.
    public var poolUsage: [SlotPools.Usage] { pools.usage }
    /// Slots in use under the global cap (every pool's together).
    public var slotsInUse: Int { pools.totalRunning }

    /// Ids of tasks that have not ended, oldest first.
    public var openTaskIDs: [String] { order.filter { tasks[$0].map { !$0.record.status.isTerminal } ?? false } }

    // MARK: submit

    /// Queues a task. With the daemon's policy it joins its pool's queue once its task.json
    /// is on disk, and `whenRecorded` says whether that worked: on a failure the task is
    /// cancelled and never starts. Otherwise it joins at once.
    /// `reusing` gives it the identity of a task that was queued and never started (a batch
    /// row of an earlier run).
    @discardableResult
    public func submit(_ request: TaskRequest, journalTags: JSONObject = [:], reusing identity: TaskIdentity? = nil,
                       whenRecorded: ((FileError?) -> Void)? = nil) throws(SubmitError) -> TaskSnapshot
    {
        loop.assertOnLoopThread()
        for dependency in request.after where tasks[dependency] == nil && ended[dependency] == nil { throw .unknownDependency(dependency) }
        for reference in ManifestGraph.resultReferences(in: request.prompt) where TaskIdentifiers.isTaskID(reference) && !request.after.contains(reference) {
            throw .resultOfNonDependency(reference)
        }
        if let dependency = request.worktree.baseTask, !request.after.contains(dependency) { throw .baseOfNonDependency(dependency) }
        var id = identity?.id ?? TaskIdentifiers.newTaskID()
        while identity == nil && (tasks[id] != nil || ended[id] != nil || FileSystem.exists(store.taskDirectory(id))) { id = TaskIdentifiers.newTaskID() }
        let sessionID = identity?.sessionID ?? request.sessionID ?? TaskIdentifiers.newSessionID()
        let createdMs = identity?.createdMs ?? Clock.wallMs()
        var base: TaskSnapshot?
        if let identity, !identity.attempts.isEmpty {
            // Its attempts go on from where they were.
            base = try plan(request, id: id, sessionID: sessionID, createdMs: createdMs, base: nil).record
            base!.attempts = identity.attempts
            base!.attempt = identity.attempts.map(\.number).max() ?? 0
            base!.reason = .retry
        }
        let task = try makeTask(request, id: id, sessionID: sessionID, createdMs: createdMs, base: base, journalTags: journalTags)
        if identity != nil { task.hasFolder = FileSystem.isDirectory(store.taskDirectory(id)) }
        // A task queued again under its old identity has its pending line already.
        persist(task, writingTaskFile: policy.recordsQueuedTasks, journaling: identity == nil || base != nil)
        link(task)
        guard policy.recordsQueuedTasks else {
            admit(task)
            whenRecorded?(nil)
            return task.record
        }
        let folder = store.taskDirectory(id)
        store.whenWritten { [weak self, weak task] (failures: [FileError]) in
            guard let self, let task else { return }
            if let failure = failures.first(where: { $0.path.hasPrefix(folder) }) {
                self.cancel(id, reason: .user, message: "not launched: \(failure)")
                whenRecorded?(failure)
            } else {
                self.admit(task)
                whenRecorded?(nil)
            }
        }
        return task.record
    }

    /// Queues again a task that was pending when an earlier supervisor stopped, keeping its
    /// id, session and creation time. Its task.json is already on disk.
    @discardableResult
    public func restore(pending snapshot: TaskSnapshot, request: TaskRequest) throws(SubmitError) -> TaskSnapshot {
        let task = try makeTask(request, id: snapshot.id, sessionID: snapshot.sessionID, createdMs: snapshot.createdMs, base: snapshot)
        task.hasFolder = true
        task.published = task.record
        link(task)
        admit(task)
        return task.record
    }

    /// Ties a new task to the tasks it waits for: those that have ended already are told to
    /// it now, the others when they end. One this supervisor does not know (its folder was
    /// removed while the task was pending) can never complete.
    private func link(_ task: TaskDriver) {
        for id in task.lifecycle.settings.dependencies {
            guard let record = tasks[id].map({ TaskRow($0.record) }) ?? ended[id] else {
                task.feed(.dependencyEnded(taskID: id, status: .cancelled, reason: nil, resultText: nil))
                continue
            }
            if record.status == .completed {
                // Its result.md may still be on its way to the disk.
                store.whenWritten { [weak self, weak task] in
                    guard let self, let task else { return }
                    let text = (try? self.store.folder.read("tasks/\(id)/result.md")).map { String(decoding: $0, as: UTF8.self) } ?? ""
                    task.feed(.dependencyEnded(taskID: id, status: .completed, reason: record.reason, resultText: text))
                }
            } else if record.status.isTerminal {
                task.feed(.dependencyEnded(taskID: id, status: record.status, reason: record.reason, resultText: nil))
            } else {
                dependents[id, default: []].append(task.id)
            }
        }
    }

    /// A task ended: the tasks that wait for it hear how (and they tell theirs in turn).
    private func tellDependents(of task: TaskDriver, _ outcome: Outcome) {
        guard let waiting = dependents.removeValue(forKey: task.id) else { return }
        let text = outcome.status == .completed ? outcome.resultText ?? "" : nil
        for id in waiting {
            tasks[id]?.feed(.dependencyEnded(taskID: task.id, status: outcome.status, reason: outcome.reason, resultText: text))
        }
    }

    /// Takes into the table a task that ended under an earlier supervisor (read back from
    /// its folder), so that it can be shown and its session continued.
    public func adopt(ended snapshot: TaskSnapshot, request: TaskRequest?) {
        guard tasks[snapshot.id] == nil, ended[snapshot.id] == nil else { return }
        if !policy.holdsEndedTasks {
            ended[snapshot.id] = TaskRow(snapshot)
            order.append(snapshot.id)
            sessions[snapshot.sessionID, default: []].append(snapshot.id)
            if snapshot.status == .completed { budgets.completed(agent: snapshot.agent, usage: snapshot.usage) }
            return
        }
        let agent = request.flatMap { $0.agent.flatMap { config.agents[$0] } } ?? DroverConfig.commandAgent
        let plan = TaskPlan(agent: agent, arguments: [], env: [:], cwd: workingDirectory, cwdIsPrivate: false, limits: ResourceLimits(),
                            pool: PoolAssignment(id: snapshot.pool, limit: 0), worktree: nil, slurm: nil, sandbox: nil)
        let lifecycle = TaskLifecycle(ended: snapshot, settings: LifecycleSettings(timers: TimerSettings().resolved, workdir: workingDirectory))
        let task = TaskDriver(supervisor: self, lifecycle: lifecycle, plan: plan, request: request)
        task.hasFolder = true
        task.published = snapshot
        insert(task)
        if snapshot.status == .completed { budgets.completed(agent: snapshot.agent, usage: snapshot.usage) }
    }

    /// The retry rule a request's tasks get (task over agent over config).
    public func retryPolicy(of request: TaskRequest) -> RetryPolicy {
        let agent = request.command != nil ? DroverConfig.commandAgent : request.agent.flatMap { config.agents[$0] }
        return request.retry.over((agent?.retry ?? RetrySettings()).over(config.retry)).resolved
    }

    /// The record a request would get under this identity, without queuing anything.
    func plannedRecord(for request: TaskRequest, identity: TaskIdentity) throws(SubmitError) -> TaskSnapshot {
        try plan(request, id: identity.id, sessionID: identity.sessionID, createdMs: identity.createdMs, base: nil).record
    }

    private func makeTask(_ request: TaskRequest, id: String, sessionID: String, createdMs: Int64, base: TaskSnapshot? = nil,
                          journalTags: JSONObject = [:]) throws(SubmitError) -> TaskDriver
    {
        let planned = try plan(request, id: id, sessionID: sessionID, createdMs: createdMs, base: base)
        let task = TaskDriver(supervisor: self, lifecycle: TaskLifecycle(record: planned.record, settings: planned.settings, now: now()),
                              plan: planned.plan, request: planned.request, journalTags: journalTags)
        insert(task)
        return task
    }

    private func plan(_ request: TaskRequest, id: String, sessionID: String, createdMs: Int64, base: TaskSnapshot?) throws(SubmitError)
        -> (record: TaskSnapshot, settings: LifecycleSettings, plan: TaskPlan, request: TaskRequest)
    {
        let agent: AgentConfig
        let arguments: [String]
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
        let workdir = request.workdir ?? agent.workdir
        let privateFolder = workdir == .task
        var cwd = privateFolder ? store.taskDirectory(id) + "/work" : FileSystem.absolute(request.cwd ?? agent.cwd ?? workingDirectory)
        var kept = request
        kept.cwd = cwd
        var worktree: WorktreePlan?
        if workdir == .worktree {
            // The base is pinned now (HEAD at launch), and kept pinned in task.json.
            let pinned = WorktreePlan.pin(request.worktree.over(agent.worktree), cwd: cwd, git: git)
            kept.worktree = pinned.settings
            let path = store.taskDirectory(id) + "/work"
            let repo = pinned.settings.repo ?? cwd
            worktree = WorktreePlan(repo: repo, base: pinned.settings.base ?? "HEAD", branch: WorktreePlan.branch(of: id), path: path,
                                    commit: pinned.settings.commit ?? true, keep: pinned.settings.keepWorktree ?? false, problem: pinned.problem)
            cwd = WorktreePlan.workingFolder(worktree: path, repo: repo, cwd: cwd)
        }
        var snapshot = base ?? TaskSnapshot(
            id: id, sessionID: sessionID, agent: agent.name, provider: provider, model: model, key: key,
            description: request.description ?? String(request.prompt.split(separator: "\n").first ?? Substring(arguments.joined(separator: " "))),
            prompt: request.prompt, createdMs: createdMs, ttlMs: timers.taskTtl, pool: pool.id)
        // A sandbox if the agent or the task asks for one; the task's members over the agent's.
        let sandbox = request.sandbox.map { $0.over(agent.sandbox ?? SandboxSettings()) } ?? agent.sandbox
        if base == nil {
            snapshot.extra = request.extra
            snapshot.extra["request"] = .object(kept.json())
            if let sandbox { snapshot.extra["sandbox"] = sandbox.json }
        }
        var env = agent.env
        for (name, value) in request.env { env[name] = value }
        let breaker = request.breaker.over(agent.breaker.over(config.breaker)).resolved
        let limits = request.limits.over(agent.limits)
        let raw = agent.workerProtocol == .raw
        // A raw command task has no agent of its own: the global launcher is its.
        let slurm = (agent.launcher ?? config.launcher)?.slurm
        let settings = LifecycleSettings(
            timers: timers, maxToolCalls: breaker.maxToolCalls, maxRepeatedToolCalls: breaker.maxRepeatedToolCalls,
            maxTranscriptBytes: breaker.maxTranscriptBytes, raw: raw, promptInArguments: WorkerLaunch.usesPrompt(arguments),
            resume: request.resume, transcriptPath: store.sessionFile(sessionID), workdir: cwd, limits: limits,
            resultPath: store.resultFile(id), retry: request.retry.over(agent.retry.over(config.retry)).resolved,
            spendLimits: request.spendLimits.over(agent.spendLimits.over(config.spendLimits)), dependencies: request.after,
            usesWorktree: worktree != nil, clustered: slurm != nil)
        let plan = TaskPlan(agent: agent, arguments: arguments, env: env, cwd: cwd, cwdIsPrivate: privateFolder, limits: limits, pool: pool,
                            worktree: worktree, slurm: slurm, sandbox: sandbox,
                            clientPassEnv: request.clientEnvironment.filter { agent.passEnv.contains($0.key) })
        return (snapshot, settings, plan, kept)
    }

    private func insert(_ task: TaskDriver) {
        tasks[task.id] = task
        order.append(task.id)
        sessions[task.record.sessionID, default: []].append(task.id)
    }

    /// The task joins its pool's queue; it starts at once when the pool has a free slot.
    private func admit(_ task: TaskDriver) {
        // A stopping supervisor starts nothing: the task stays pending for the next one.
        guard !task.record.status.isTerminal, !draining else { return }
        task.feed(.admitted)
    }

    /// Its pool's queue (by its priority): a grant at once, or a wait that says why.
    func enqueue(_ task: TaskDriver, atHead: Bool) {
        guard !draining else { return }
        let priority = task.request?.priority ?? 0
        if let grant = pools.request(taskID: task.id, in: task.pool, provider: task.record.provider, atHead: atHead, priority: priority) {
            startGranted([grant])
        } else {
            task.feed(.waiting(pools.cooldownUntil(task.pool.id) == nil ? .slot : .cooldown))
        }
    }

    /// A retried attempt's backoff is over: it queues again, at the head of its pool.
    func requeue(_ task: TaskDriver) {
        enqueue(task, atHead: true)
    }

    // MARK: a running session

    /// Sends a follow-up prompt to a running framed worker, unless it has left more than
    /// maxBufferedBytes of earlier input unread.
    public func deliverPrompt(_ taskID: String, text: String) -> PromptDelivery {
        loop.assertOnLoopThread()
        guard let task = tasks[taskID], task.lifecycle.acceptsPrompts, let queued = task.queuedInputBytes else { return .notRunning }
        let limit = config.maxBufferedBytes
        guard queued + text.utf8.count <= limit else { return .backlogFull(queuedBytes: queued, limit: limit) }
        task.feed(.prompt(text))
        return .delivered
    }

    /// Stops starting tasks: pending ones stay pending (for the next supervisor).
    public func stopStartingTasks() {
        draining = true
    }

    // MARK: cancel

    /// Cancels a pending task at once, or a running one (it is reported cancelled once its
    /// process group is reaped). True only when this call cancelled it: false when the task
    /// is unknown, has ended, or its end is already decided.
    @discardableResult
    public func cancel(_ taskID: String, reason: TaskReason = .user, message: String? = nil) -> Bool {
        loop.assertOnLoopThread()
        guard let task = tasks[taskID], task.lifecycle.isCancellable else { return false }
        task.feed(.cancel(reason, message: message))
        return true
    }

    /// Cancels every task that has not ended: pending ones first, so that slots freed by
    /// running ones are not handed to them.
    public func cancelAll(reason: TaskReason = .user, message: String? = nil) {
        let open = openTaskIDs
        for id in open where tasks[id]?.record.status == .pending { cancel(id, reason: reason, message: message) }
        for id in open { cancel(id, reason: reason, message: message) }
    }

    // MARK: starting

    /// Starts granted tasks one after another; a start that fails at once frees its slot,
    /// whose grant joins the same list instead of recursing.
    func startGranted(_ grants: [SlotGrant]) {
        granted.append(contentsOf: grants)
        guard !startingGranted else { return }
        startingGranted = true
        while !granted.isEmpty {
            let grant = granted.removeFirst()
            guard !draining, let task = tasks[grant.taskID] else { continue }
            guard admitsUnderBudgets(task, grant) else { continue }
            task.grant = grant
            task.grantedAtNs = Clock.monotonicNs()
            running.insert(task.id)
            onMeasure?(.attemptBegan(pool: grant.pool))
            task.feed(.slotGranted(slot: grant.slot))
        }
        startingGranted = false
    }

    /// The attempt starts: its record goes into the journal, and the worker is started only
    /// once that record is durable (SPEC 16.1).
    func recordStart(of task: TaskDriver) {
        if !task.hasFolder {
            store.makeTaskDirectory(task.id)  // the run's files go in it
            task.hasFolder = true
        }
        store.appendEvent(TaskEvent(task.record, atMs: Clock.wallMs()))
        store.whenJournaled { [weak task] in task?.feed(.startRecorded) }
    }

    // MARK: state changes

    /// The worker runs: its running task.json (now, or after `runningFileDelayMs`), and the report.
    func recordRunning(_ task: TaskDriver) {
        guard let delay = policy.runningFileDelayMs else { return publishWhenDurable(task, writingTaskFile: true) }
        unwrittenStarts.append((task.id, loop.nowMs + UInt64(max(0, delay))))
        if !startWriteTimer.isActive { startWriteTimer.start(after: delay) { [weak self] in self?.writeDueStarts() } }
        publishWhenDurable(task, writingTaskFile: false)
    }

    /// The one way into a terminal state, from the lifecycle's `end`: the slot goes back in
    /// the same turn, the files follow, and the report once they are durable.
    func finish(_ task: TaskDriver, _ outcome: Outcome) {
        running.remove(task.id)
        dirty.remove(task.id)
        let record = task.record
        if outcome.status == .completed { budgets.completed(agent: record.agent, usage: record.usage) }
        budgetWaiters.removeAll { $0 === task }
        releaseReservation(of: task)
        if outcome.status == .completed { store.writeResult(task.id, text: outcome.resultText ?? "") }
        if !task.hasFolder {
            store.makeTaskDirectory(task.id)
            task.hasFolder = true
        }
        store.writeTask(record)
        store.appendEvent(TaskEvent(record, atMs: record.endedMs ?? Clock.wallMs()))
        store.whenDurable { [weak self, weak task] in
            guard let self, let task else { return }
            self.publish(task, record)
        }
        onEnded?(record)
        if let grant = task.grant {
            task.grant = nil
            var grants = pools.release(grant)
            // Adaptive limits climb back on attempts that complete untroubled by a rate limit.
            if outcome.status == .completed && !task.lifecycle.lastAttemptRateLimited {
                grants += pools.attemptSucceeded(in: grant.pool, nowMs: loop.nowMs)
            }
            startGranted(grants)
        }
        tellDependents(of: task, outcome)
    }

    /// An attempt ended and another follows after its backoff: the slot goes back now, the
    /// record of the attempt and of the wait follow. While the task's pool cools down for
    /// longer than `fallbackAfter`, the next attempt moves to a fallback model.
    func attemptEnded(_ task: TaskDriver, _ outcome: Outcome) {
        onMeasure?(.retried(pool: task.pool.id, reason: outcome.reason))
        running.remove(task.id)
        dirty.remove(task.id)
        releaseReservation(of: task)
        if let choice = fallback(for: task) {
            task.pool = choice.assignment
            task.feed(.moveTo(choice.model))
        }
        let record = task.record
        store.writeTask(record)
        store.appendEvent(TaskEvent(record, atMs: Clock.wallMs()), afterFiles: policy.recordsQueuedTasks)
        publishWhenDurable(task, writingTaskFile: false)
        if let grant = task.grant {
            task.grant = nil
            startGranted(pools.release(grant))
        }
    }

    /// The task's worker did something worth showing in task.json; written with the batch.
    func progressChanged(_ task: TaskDriver) {
        if task.hasFolder { dirty.insert(task.id) }
    }

    private func publish(_ task: TaskDriver, _ record: TaskSnapshot) {
        task.published = record
        onReport(record)
        if record.status.isTerminal && !policy.holdsEndedTasks { letGo(task) }
    }

    /// Writes the running task.json of tasks that have run for `runningFileDelayMs` and
    /// are still running, then waits for the next one due.
    private func writeDueStarts() {
        loop.refreshTime()
        let now = loop.nowMs
        while unwrittenStartHead < unwrittenStarts.count, unwrittenStarts[unwrittenStartHead].dueMs <= now {
            let id = unwrittenStarts[unwrittenStartHead].id
            unwrittenStartHead += 1
            if let task = tasks[id], task.record.status == .running { dirty.insert(id) }
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
            if let task = tasks[id], !task.record.status.isTerminal { store.writeTask(task.record) }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Records a new task: its journal line, and its folder and task.json when `writingTaskFile`.
    private func persist(_ task: TaskDriver, writingTaskFile: Bool, journaling: Bool = true) {
        let record = task.record
        if writingTaskFile {
            store.makeTaskDirectory(record.id)
            task.hasFolder = true
            store.writeTask(record)
        }
        // With its task.json, the line follows the file: a pending line in the journal then
        // always has its task.json, from which a restart can queue it again.
        if journaling { store.appendEvent(TaskEvent(record, atMs: record.createdMs, tags: task.journalTags), afterFiles: writingTaskFile) }
        store.whenDurable { [weak self, weak task] in
            guard let self, let task, task.published == nil else { return }
            self.publish(task, record)
        }
    }

    /// Writes the record (with its task.json when asked) and reports it once durable.
    private func publishWhenDurable(_ task: TaskDriver, writingTaskFile: Bool) {
        let record = task.record
        if writingTaskFile { store.writeTask(record) }
        store.whenDurable { [weak self, weak task] in
            guard let self, let task, !(task.published?.status.isTerminal ?? false) else { return }
            self.publish(task, record)
        }
    }
}

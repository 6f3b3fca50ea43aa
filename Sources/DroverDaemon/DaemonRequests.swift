import DroverCore
import DroverWire
import Glibc

/// The control protocol's requests (see README, "Driving drover without the CLI"), each
/// already decoded and checked (ControlRequest). Answers are built from ControlReply types:
/// "ok", "error" (with `code`, the CLI's exit status, and `message`) or, for streams,
/// "progress" / "event" / "lines" frames before the last one.
extension DaemonServer {
    func handle(_ request: ControlRequest, on connection: ControlConnection) {
        switch request {
        case .ping: reply(connection, PingReply(pid: Int(getpid())))
        case .launch(let launch): self.launch(launch, connection)
        case .status(let status): self.status(status, connection)
        case .output(let output): self.output(output, connection)
        case .cancel(let cancel): self.cancel(cancel, connection)
        case .continue(let request): continueSession(request, connection)
        case .wait(let wait): self.wait(wait, connection)
        case .logs(let logs): self.logs(logs, connection)
        case .events(let events): self.events(events, connection)
        case .shutdown: shutdown(replyTo: connection)
        case .stats: stats(connection)
        case .restart(let request): restart(request, connection)
        case .reload(let request): reload(request, connection)
        case .clean(let request): clean(request, connection)
        case .metrics: reply(connection, MetricsReply(text: String(decoding: metricsText(), as: UTF8.self)))
        }
    }

    func reply(_ connection: ControlConnection, _ frame: some ControlReply) {
        connection.send(frame)
        connection.finish()
    }

    private func fail(_ connection: ControlConnection, _ code: Int, _ message: String) {
        reply(connection, ErrorReply(code: code, message: message))
    }

    /// The first id that is not a known task, phrased for the user.
    private func unknownTask(_ ids: [String]) -> String? {
        for id in ids where current(id) == nil {
            if TaskIdentifiers.isSessionID(id) { return "\(id) is a session id; give a task id (bg_...)" }
            return "no such task: \(id)"
        }
        return nil
    }

    /// The tasks a selection names, each once, in the order given (oldest first for all).
    private func taskIDs(_ selection: TaskSelection) -> [String] {
        switch selection {
        case .all: return supervisor.openTaskIDs
        case .ids(let ids):
            var seen: Set<String> = []
            return ids.filter { seen.insert($0).inserted }
        }
    }

    private func document(_ snapshot: TaskSnapshot) -> TaskDocument { TaskDocument(snapshot, json: snapshot.json()) }

    private func rowDocument(_ snapshot: TaskSnapshot) -> TaskDocument { TaskDocument(snapshot, json: TaskRow(snapshot).listingJSON) }

    // MARK: stats

    /// Read-only figures for tests and monitoring: slots per pool, task counts, and the
    /// daemon's open descriptors (this connection's socket included).
    private func stats(_ connection: ControlConnection) {
        let nowMs = loop.nowMs
        let wallMs = Clock.wallMs()
        let pools = supervisor.poolUsage.map { usage in
            StatsReply.Pool(id: usage.pool, limit: usage.limit, running: usage.running, waiting: usage.waiting, effectiveLimit: usage.effectiveLimit,
                            cooldownUntilMs: usage.cooldownUntilMs.map { wallMs + Int64($0 > nowMs ? $0 - nowMs : 0) })
        }
        // Listing /proc/self/fd opens one more descriptor, which is not counted.
        var answer = StatsReply(
            pid: Int(getpid()), running: supervisor.runningCount, pending: supervisor.pendingCount, slotsInUse: supervisor.slotsInUse,
            tasks: knownTaskIDs.count, pools: pools, openDescriptors: FileSystem.list("/proc/self/fd").count - 1,
            baselineDescriptors: baselineDescriptors, budgets: supervisor.budgets.standings(nowMs: wallMs).map(\.json))
        let config = supervisor.config
        answer.config = config.identity
        let usesSlurm = config.launcher?.slurm != nil || config.agents.values.contains { $0.launcher?.slurm != nil }
        guard usesSlurm else { return reply(connection, answer) }
        // The cluster's licenses, from scontrol (a child on the loop, which goes on meanwhile).
        guard let scontrol = HelperProgram("scontrol", environment: supervisor.launch.environment) else {
            answer.clusterProblem = "scontrol not found on PATH"
            return reply(connection, answer)
        }
        scontrol.run(["show", "licenses", "--oneliner"], loop: loop) { [weak self] result in
            if result.succeeded {
                answer.licenses = ClusterLicense.parse(result.text).map(\.json)
            } else {
                answer.clusterProblem = "scontrol show licenses: \(result.message)"
            }
            self?.reply(connection, answer)
        }
    }

    // MARK: launch and continue

    /// A client that names another config than the daemon runs with (or the same file,
    /// changed since) is refused with the way out, rather than served by the wrong one.
    private func refusesConfig(of client: ClientContext, _ connection: ControlConnection) -> Bool {
        guard let named = client.config, let problem = supervisor.config.identity.mismatch(with: named) else { return false }
        let flag = named.path.map { " --config \($0)" } ?? ""
        fail(connection, 2, "\(problem). Run `drover reload\(flag)` to make the daemon (\(state.path)) load it; its running tasks keep their settings")
        return true
    }

    private func launch(_ request: LaunchRequest, _ connection: ControlConnection) {
        guard !shuttingDown else { return fail(connection, 5, "the daemon is shutting down") }
        if refusesConfig(of: request.client, connection) { return }
        if let session = request.task.sessionID, taskIDs(inSession: session) == nil {
            return fail(connection, 6, "no such session: \(session)")
        }
        submit(request.task, client: request.client, connection)
    }

    private func submit(_ request: TaskRequest, client: ClientContext, _ connection: ControlConnection) {
        var task = request
        task.clientEnvironment = client.passEnv
        // Acknowledged only once task.json is on disk: nothing acknowledged is ever lost. A
        // task that could not be written is not acknowledged, and never runs either.
        var launched: TaskSnapshot?
        do {
            launched = try supervisor.submit(task) { [unowned self] failure in
                guard !connection.isClosed, let snapshot = launched else { return }
                if let failure { return self.fail(connection, 5, "cannot launch: \(failure)") }
                self.reply(connection, LaunchReply(taskID: snapshot.id, sessionID: snapshot.sessionID,
                                                   status: (self.current(snapshot.id) ?? snapshot).status))
            }
        } catch {
            return fail(connection, 2, "launch: \(error.description)")
        }
    }

    private func continueSession(_ request: ContinueRequest, _ connection: ControlConnection) {
        guard !shuttingDown else { return fail(connection, 5, "the daemon is shutting down") }
        if refusesConfig(of: request.client, connection) { return }
        let session = request.session
        guard let taskIDs = taskIDs(inSession: session) else {
            if TaskIdentifiers.isTaskID(session) { return fail(connection, 6, "\(session) is a task id; give its session id (ses_...)") }
            return fail(connection, 6, "no such session: \(session)")
        }
        // A live session gets the prompt as a frame; it is never silently dropped.
        for id in taskIDs.reversed() where current(id)?.status == .running {
            switch supervisor.deliverPrompt(id, text: request.prompt) {
            case .delivered:
                return reply(connection, LaunchReply(taskID: id, sessionID: session, status: .running, delivered: true))
            case .backlogFull(let queued, let limit):
                return fail(connection, 2, "task \(id) has not read the \(queued) bytes it was sent before; another \(request.prompt.utf8.count) would pass maxBufferedBytes (\(limit))")
            case .notRunning:
                continue
            }
        }
        guard let last = taskIDs.last, var task = supervisor.request(of: last) else {
            return fail(connection, 6, "session \(session) cannot be continued: its last task's request is unreadable")
        }
        task.prompt = request.prompt
        task.description = request.description ?? String(request.prompt.split(separator: "\n").first ?? "")
        task.sessionID = session
        task.resume = true
        // A continuation follows its session, not what the session's first task waited for.
        task.after = []
        // In a worktree it goes on from where the last task's branch ended.
        if task.workdir == .worktree, let last = current(last) {
            let head = last.worktreeHead
            task.worktree.base = head ?? (task.worktree.baseTask == nil ? task.worktree.base : nil)
        }
        submit(task, client: request.client, connection)
    }

    private func restart(_ request: RestartRequest, _ connection: ControlConnection) {
        guard !shuttingDown else { return fail(connection, 5, "the daemon is shutting down") }
        if refusesConfig(of: request.client, connection) { return }
        if let problem = unknownTask([request.id]) { return fail(connection, 6, problem) }
        guard let snapshot = current(request.id), snapshot.status.isTerminal else {
            return fail(connection, 2, "task \(request.id) has not ended: cancel it first, or wait for it")
        }
        guard var task = supervisor.request(of: request.id) else {
            return fail(connection, 6, "task \(request.id) cannot be restarted: its request in task.json is unreadable")
        }
        if request.newSession {
            task.sessionID = nil
            task.resume = false
        } else {
            task.sessionID = snapshot.sessionID
        }
        task.extra["restart_of"] = .string(request.id)
        submit(task, client: request.client, connection)
    }

    private func reload(_ request: ReloadRequest, _ connection: ControlConnection) {
        switch reloadConfig(from: request.config) {
        case .success(let config): reply(connection, ReloadReply(config: config.source))
        case .failure(let error): fail(connection, 2, "reload: \(error.description); the daemon keeps \(supervisor.config.source ?? "the built-in defaults")")
        }
    }

    // MARK: queries

    private func status(_ request: StatusRequest, _ connection: ControlConnection) {
        if let problem = unknownTask(request.ids) { return fail(connection, 6, problem) }
        guard request.ids.isEmpty else {
            return reply(connection, TasksReply(tasks: request.ids.compactMap { current($0).map(document) }))
        }
        // Ended tasks are listed from the rows the supervisor keeps, without reading their
        // files; the rows are written one after another, comma-separated, into one buffer.
        var rows: [UInt8] = []
        var count = 0
        let createdAfter = request.sinceMs.map { Clock.wallMs() - Int64($0) }
        // With a limit, the newest first; else oldest first.
        let ids = request.limit == nil ? knownTaskIDs : knownTaskIDs.reversed()
        for id in ids {
            if let limit = request.limit, count >= limit { break }
            guard let snapshot = supervisor.row(id) else { continue }
            if !request.statuses.isEmpty && !request.statuses.contains(snapshot.status) { continue }
            if !request.agents.isEmpty && !request.agents.contains(snapshot.agent) { continue }
            if let createdAfter, snapshot.createdMs < createdAfter { continue }
            if count > 0 { rows.append(UInt8(ascii: ",")) }
            snapshot.writeListing(into: &rows)
            count += 1
        }
        connection.send(encoded: TasksReply.encodedFrame(rows: count == 0 ? [] : [rows]))
        connection.finish()
    }

    /// A task with its result text when it has one.
    func withResult(_ snapshot: TaskSnapshot) -> OutputReply {
        let result = snapshot.resultPath.flatMap { try? FileSystem.read($0) }.map { String(decoding: $0, as: UTF8.self) }
        return OutputReply(task: document(snapshot), result: result)
    }

    private func output(_ request: OutputRequest, _ connection: ControlConnection) {
        let id = request.id
        if let problem = unknownTask([id]) { return fail(connection, 6, problem) }
        let snapshot = current(id)!
        if snapshot.status.isTerminal || !request.wait {
            return reply(connection, withResult(snapshot))
        }
        // Event-driven: answered in the loop turn in which the task's end is reported.
        let timer = request.timeoutMs.map { ms -> LoopTimer in
            let timer = LoopTimer(loop: loop)
            timer.start(after: ms) { [unowned self] in
                if !connection.isClosed { self.reply(connection, OutputReply(task: self.document(self.current(id)!), result: nil, timedOut: true)) }
            }
            return timer
        }
        whenEnded(id) { [unowned self] snapshot in
            timer?.stop()
            if !connection.isClosed { self.reply(connection, self.withResult(snapshot)) }
        }
    }

    /// Cancels each task and answers once all of them have ended, so the rows are final.
    /// `cancelled` holds the tasks this request cancelled (the supervisor says whether it
    /// decided the end); the others had ended, or their end was already decided.
    private func cancel(_ request: CancelRequest, _ connection: ControlConnection) {
        let asked = taskIDs(request.tasks)
        if let problem = unknownTask(asked) { return fail(connection, 6, problem) }
        var cancelled: [String] = []
        var alreadyEnded: [String] = []
        for id in asked {
            if supervisor.cancel(id, reason: .user) { cancelled.append(id) } else { alreadyEnded.append(id) }
        }
        let answer = { [unowned self] in
            let tasks = asked.compactMap { self.current($0).map(self.rowDocument) }
            self.reply(connection, CancelReply(tasks: tasks, cancelled: cancelled, alreadyEnded: alreadyEnded))
        }
        var remaining = Set(asked.filter { !(current($0)?.status.isTerminal ?? true) })
        if remaining.isEmpty { return answer() }
        for id in remaining {
            whenEnded(id) { snapshot in
                remaining.remove(snapshot.id)
                if remaining.isEmpty { answer() }
            }
        }
    }

    private func wait(_ request: WaitRequest, _ connection: ControlConnection) {
        let asked = taskIDs(request.tasks)
        if let problem = unknownTask(asked) { return fail(connection, 6, problem) }
        let counts = { [unowned self] () -> WaitCounts in
            var counts = WaitCounts()
            counts.total = asked.count
            for id in asked {
                switch self.current(id)?.status {
                case .completed: counts.done += 1
                case .error: counts.done += 1; counts.failed += 1
                case .cancelled: counts.done += 1; counts.cancelled += 1
                case .running: counts.running += 1
                default: counts.pending += 1
                }
            }
            return counts
        }
        let finished = { [unowned self] () -> Bool in asked.allSatisfy { self.current($0)?.status.isTerminal ?? true } }
        let final = { [unowned self] (timedOut: Bool) -> WaitFrame in
            .finished(counts(), tasks: asked.compactMap { self.current($0).map(self.rowDocument) }, timedOut: timedOut)
        }
        if finished() { return reply(connection, final(false)) }
        let watched = Set(asked)
        var timer: LoopTimer?
        let token = subscribe { [unowned self] snapshot in
            guard watched.contains(snapshot.id), !connection.isClosed else { return }
            if finished() {
                timer?.stop()
                self.reply(connection, final(false))
            } else {
                connection.send(WaitFrame.progress(counts()))
            }
        }
        connection.onClose = { [unowned self] in
            timer?.stop()
            self.unsubscribe(token)
        }
        connection.send(WaitFrame.progress(counts()))
        if let ms = request.timeoutMs {
            let t = LoopTimer(loop: loop)
            t.start(after: ms) { [unowned self] in self.reply(connection, final(true)) }
            timer = t
        }
    }

    // MARK: streams

    private func logs(_ request: LogsRequest, _ connection: ControlConnection) {
        let id = request.id
        if let problem = unknownTask([id]) { return fail(connection, 6, problem) }
        let running = !(current(id)?.status.isTerminal ?? true)
        if request.follow && running {
            return TranscriptFollower(daemon: self, taskID: id, connection: connection).start()
        }
        // A running task's file may end in a line still being written: only whole lines
        // recorded so far are read.
        streamFile(store.transcriptFile(id), lines: running ? transcriptLines[id] : nil, to: connection) { [unowned self] connection in
            self.reply(connection, LogsFrame.end)
        }
    }

    private func events(_ request: EventsRequest, _ connection: ControlConnection) {
        guard request.follow else {
            return streamFile(store.eventsFile, to: connection) { [unowned self] connection in self.reply(connection, EventsFrame.end) }
        }
        let token = subscribe({ snapshot in
            connection.send(EventsFrame.event(TaskEvent(snapshot, atMs: Clock.wallMs())))
        }, pools: { event in connection.send(EventsFrame.pool(event)) })
        connection.onClose = { [unowned self] in self.unsubscribe(token) }
        connection.send(EventsFrame.following)
    }

    /// The lines of a file (all, or the first `lines`) once what was asked for so far is
    /// written, read off the loop thread; then `end`.
    private func streamFile(_ path: String, lines: Int? = nil, to connection: ControlConnection, end: @escaping (ControlConnection) -> Void) {
        store.whenFlushed { [unowned self] in
            guard !connection.isClosed else { return }
            let streamer = LineFileStreamer(
                loop: self.loop, path: path, maxLines: lines, chunkBytes: LineFileStreamer.chunkBytes(self.config),
                send: { connection.send(encoded: $0, whenWritten: $1) }
            ) { _ in
                end(connection)
            }
            connection.onClose = { streamer.cancel() }
        }
    }
}

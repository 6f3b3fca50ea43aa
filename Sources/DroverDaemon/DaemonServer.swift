import CDroverSystem
import CLibUV
import DroverCore
import DroverWire
import Glibc

/// `drover serve`: a supervisor that lives in a state folder and answers clients on a Unix
/// socket there. The folder is the database: every task is its task.json, so a new daemon
/// rebuilds its table from the folder (pending tasks queue again in their original order,
/// tasks that were running become error(lost) and their process groups are killed).
public final class DaemonServer {
    public enum StartError: Error, CustomStringConvertible {
        case locked(String)
        /// The folder is not private to this user (SPEC 16.4).
        case refused(String)
        case storage(String)
        case socket(String)

        public var description: String {
            switch self {
            case .locked(let text), .refused(let text), .storage(let text), .socket(let text): text
            }
        }

        /// Exit status for `drover serve`: 2 when another daemon holds the folder, or it is refused.
        public var exitCode: Int32 {
            switch self {
            case .locked, .refused: 2
            case .storage, .socket: 5
            }
        }
    }

    public let state: StateFolder
    let loop: EventLoop
    let store: ResultStore
    let supervisor: Supervisor
    /// The config in force: the one it started with, until a reload.
    var config: DroverConfig
    private let lock: DaemonLock
    private let listener: UnsafeMutablePointer<uv_pipe_t>
    private var signals: [LoopSignal] = []
    var hook: CompletionHook?

    /// Open descriptors once up, before the first task (for `stats`).
    private(set) var baselineDescriptors = 0
    /// Retention's sweeps: the next task to age out, and one sweep per loop turn after ends.
    lazy var retentionTimer: LoopTimer = {
        let timer = LoopTimer(loop: loop)
        timer.unref()
        return timer
    }()
    lazy var retentionSoon: LoopTimer = {
        let timer = LoopTimer(loop: loop)
        timer.unref()
        return timer
    }()
    var retentionSweepQueued = false
    private var endWaiters: [String: [(TaskSnapshot) -> Void]] = [:]
    private var reportListeners: [Int: (TaskSnapshot) -> Void] = [:]
    private var poolListeners: [Int: (PoolEvent) -> Void] = [:]
    private var transcriptListeners: [String: [Int: ([UInt8]) -> Void]] = [:]
    private(set) var transcriptLines: [String: Int] = [:]
    private var nextListener = 0
    private(set) var shuttingDown = false
    private var shutdownReplies: [ControlConnection] = []
    /// Control connections open now, held to `config.maxConnections`.
    private var openConnections = 0
    let metrics = DaemonMetrics()
    /// `GET /metrics` over HTTP, with `--metrics-listen`.
    private var metricsServer: MetricsHTTPServer?
    /// Where the metrics are served (the port the kernel chose, for port 0).
    public var metricsAddress: ListenAddress? { metricsServer?.address }

    public init(state: StateFolder, config: DroverConfig, launch: WorkerLaunch, metricsListen: ListenAddress? = nil) throws(StartError) {
        self.state = state
        self.config = config
        do {
            try FolderPermissions.check(path: state.path)
        } catch {
            throw .refused(error.description)
        }
        do {
            try FileSystem.makeDirectories(state.path)
        } catch {
            throw .storage(error.description)
        }
        do {
            lock = try DaemonLock.acquire(state)
        } catch {
            throw .locked(error.description)
        }
        let engine: Engine
        do {
            engine = try Engine(folder: state.path, config: config, launch: launch, policy: .daemon)
        } catch {
            lock.release(state)
            throw .refused(error.description)
        }
        loop = engine.loop
        store = engine.store
        supervisor = engine.supervisor
        listener = UnsafeMutablePointer<uv_pipe_t>.allocate(capacity: 1)
        if let onComplete = config.onComplete { hook = CompletionHook(loop: loop, launch: launch, arguments: onComplete) }
        supervisor.onReport = { [unowned self] snapshot in self.reported(snapshot) }
        supervisor.onPoolEvent = { [unowned self] event in for listener in self.poolListeners.values { listener(event) } }
        supervisor.onMeasure = { [metrics] measure in metrics.observe(measure) }
        supervisor.onTranscriptLine = { [unowned self] id, line in
            self.transcriptLines[id, default: 0] += 1
            if let listeners = self.transcriptListeners[id] { for listener in listeners.values { listener(line) } }
        }
        // Bound before anything else happens, so that a port in use changes nothing.
        if let metricsListen {
            do {
                metricsServer = try MetricsHTTPServer(loop: loop, address: metricsListen) { [unowned self] in self.metricsText() }
            } catch {
                lock.release(state)
                throw error
            }
        }
        recover()
        // Reading every task.json took far more memory than the rows the daemon keeps.
        releaseFreedMemory()
        sweepRetention()
        try listen()
        for signal in [SIGTERM, SIGINT] {
            signals.append(LoopSignal(loop: loop, signal: signal) { [unowned self] in self.shutdown(replyTo: nil) })
        }
        // SIGHUP: read the daemon's own config file again.
        signals.append(LoopSignal(loop: loop, signal: SIGHUP) { [unowned self] in _ = self.reloadConfig(from: nil) })
        // Listing /proc/self/fd opens one more descriptor, which is not counted.
        baselineDescriptors = FileSystem.list("/proc/self/fd").count - 1
    }

    /// Serves until shut down; returns the exit status.
    public func run() -> Int32 {
        loop.run()
        releaseFolder()
        return 0
    }

    private var released = false

    /// Writes everything still pending, then removes the socket and the lock, so that a new
    /// daemon can start on the folder at once.
    private func releaseFolder() {
        guard !released else { return }
        released = true
        store.close()
        unlink(state.socket)
        lock.release(state)
    }

    // MARK: recovery

    /// Rebuilds the table from the folder: pending tasks queue again in their original
    /// order; tasks that may have started under the daemon that died are error(lost), and
    /// what is left of their processes is killed.
    /// Pending tasks in the order they were created, each after the pending tasks it waits
    /// for (so that it finds them in the table when it is queued again).
    static func dependenciesFirst(_ pending: [(TaskSnapshot, TaskRequest)]) -> [(TaskSnapshot, TaskRequest)] {
        let sorted = pending.sorted { ($0.0.createdMs, $0.0.id) < ($1.0.createdMs, $1.0.id) }
        let byID = Dictionary(sorted.map { ($0.0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var placed: Set<String> = []
        var ordered: [(TaskSnapshot, TaskRequest)] = []
        func place(_ task: (TaskSnapshot, TaskRequest)) {
            guard placed.insert(task.0.id).inserted else { return }
            for id in task.1.after { if let dependency = byID[id] { place(dependency) } }
            ordered.append(task)
        }
        sorted.forEach(place)
        return ordered
    }

    private func recover() {
        var found = FolderRecovery.run(store: store, requestsOfEnded: supervisor.policy.holdsEndedTasks) { [supervisor] request in
            supervisor.retryPolicy(of: request)
        }
        // What lost tasks left is gone before their worktrees are committed and removed.
        FolderRecovery.killRemains(of: found.lost)
        SlurmRecovery.cancelJobs(of: found.lost, environment: supervisor.launch.environment, notes: &found.notes)
        let finished = WorktreeRecovery.finish(found.lost, store: store, git: supervisor.git, notes: &found.notes)
        let worktrees = Dictionary(finished.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        for note in found.notes { writeLog("recovery: \(note)") }
        for (snapshot, request) in found.ended { supervisor.adopt(ended: worktrees[snapshot.id] ?? snapshot, request: request) }
        for (snapshot, request) in Self.dependenciesFirst(found.pending) {
            do {
                try supervisor.restore(pending: snapshot, request: request)
                // The launching client's passEnv values were never written down.
                if let names = request.agent.flatMap({ config.agents[$0]?.passEnv }), !names.isEmpty {
                    writeLog("recovery: \(snapshot.id) is pending again; its passEnv (\(names.joined(separator: ", "))) comes from this daemon's environment, not its launching client's")
                }
            } catch {
                let lost = FolderRecovery.recordLost(snapshot, in: store, message: "could not be queued again after a restart: \(error)")
                supervisor.adopt(ended: lost, request: request)
            }
        }
    }

    func writeLog(_ line: String) {
        DroverLog.logger.info("\(line)")
    }

    // MARK: reports

    private func reported(_ snapshot: TaskSnapshot) {
        if snapshot.status.isTerminal {
            metrics.ended(snapshot)
            if let waiters = endWaiters.removeValue(forKey: snapshot.id) { for waiter in waiters { waiter(snapshot) } }
            transcriptListeners[snapshot.id] = nil
            hook?.run(for: snapshot)
            retentionAfterEnd()
        }
        for listener in reportListeners.values { listener(snapshot) }
        if shuttingDown && supervisor.runningCount == 0 { finishShutdown() }
    }

    /// What the daemon holds of a task besides the supervisor's table.
    func forgetCached(_ id: String) {
        transcriptLines[id] = nil
    }

    /// A task as clients see it: live progress while it runs; its end once that is reported.
    func current(_ id: String) -> TaskSnapshot? { supervisor.view(id) }

    /// Every task id of the folder, oldest first.
    var knownTaskIDs: [String] { supervisor.taskIDs }

    /// The tasks of a session, oldest first; nil for an unknown session.
    func taskIDs(inSession session: String) -> [String]? { supervisor.taskIDs(inSession: session) }

    func whenEnded(_ id: String, _ action: @escaping (TaskSnapshot) -> Void) {
        if let snapshot = current(id), snapshot.status.isTerminal {
            action(snapshot)
        } else {
            endWaiters[id, default: []].append(action)
        }
    }

    /// Subscribes to every report; returns a token for `unsubscribe`.
    func subscribe(_ listener: @escaping (TaskSnapshot) -> Void) -> Int {
        nextListener += 1
        reportListeners[nextListener] = listener
        return nextListener
    }

    func unsubscribe(_ token: Int) {
        reportListeners[token] = nil
        poolListeners[token] = nil
    }

    /// Subscribes to pools' cooldowns too, under the same token.
    func subscribe(_ listener: @escaping (TaskSnapshot) -> Void, pools: @escaping (PoolEvent) -> Void) -> Int {
        let token = subscribe(listener)
        poolListeners[token] = pools
        return token
    }

    func subscribeTranscript(_ id: String, _ listener: @escaping ([UInt8]) -> Void) -> Int {
        nextListener += 1
        transcriptListeners[id, default: [:]][nextListener] = listener
        return nextListener
    }

    func unsubscribeTranscript(_ id: String, _ token: Int) { transcriptListeners[id]?[token] = nil }

    // MARK: socket

    private func listen() throws(StartError) {
        // A socket left by a daemon that died: this one holds the lock, so it is stale.
        unlink(state.socket)
        uv_pipe_init(loop.raw, listener, 0)
        listener.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let previous = umask(0o177)
        let rc = uv_pipe_bind(listener, state.socket)
        umask(previous)
        guard rc == 0 else { throw .socket("cannot listen on \(state.socket): \(String(cString: uv_strerror(rc)))") }
        chmod(state.socket, 0o600)
        let listening = uv_listen(asStream(listener), 128) { server, status in
            guard status == 0 else { return }
            let daemon = Unmanaged<DaemonServer>.fromOpaque(server!.pointee.data).takeUnretainedValue()
            daemon.accept()
        }
        guard listening == 0 else { throw .socket("cannot listen on \(state.socket): \(String(cString: uv_strerror(listening)))") }
    }

    private func accept() {
        let client = UnsafeMutablePointer<uv_pipe_t>.allocate(capacity: 1)
        uv_pipe_init(loop.raw, client, 0)
        guard uv_accept(asStream(listener), asStream(client)) == 0 else {
            uv_close(asHandle(client)) { UnsafeMutableRawPointer($0!).deallocate() }
            return
        }
        // Only the daemon's own user may drive it.
        var fd: uv_os_fd_t = -1
        var uid: uid_t = 0
        guard uv_fileno(asHandle(client), &fd) == 0, drover_peer_uid(fd, &uid) == 0, uid == geteuid() else {
            ControlConnection(handle: client, loop: loop, config: config).close()
            return
        }
        guard openConnections < config.maxConnections else {
            let refused = ControlConnection(handle: client, loop: loop, config: config)
            refused.send(ErrorReply(code: 5, message: "the daemon has \(openConnections) connections open, its limit (maxConnections); try again later"))
            refused.finish()
            return
        }
        openConnections += 1
        let connection = ControlConnection(handle: client, loop: loop, config: config) { [unowned self] in self.openConnections -= 1 }
        connection.onRequest = { [unowned self, unowned connection] request in self.handle(request, on: connection) }
        connection.start()
    }

    // MARK: shutdown

    /// Running tasks are cancelled(shutdown) and reaped; pending ones stay for the next start.
    func shutdown(replyTo connection: ControlConnection?) {
        if let connection { shutdownReplies.append(connection) }
        guard !shuttingDown else { return }
        shuttingDown = true
        shutdownListener()
        metricsServer?.close()
        supervisor.stopStartingTasks()
        for id in supervisor.openTaskIDs where supervisor.snapshot(id)?.status == .running {
            supervisor.cancel(id, reason: .shutdown, message: "the daemon shut down")
        }
        if supervisor.runningCount == 0 { finishShutdown() }
    }

    private func shutdownListener() {
        uv_close(asHandle(listener)) { UnsafeMutableRawPointer($0!).deallocate() }
        unlink(state.socket)
    }

    private func finishShutdown() {
        guard !released else { return }
        releaseFolder()
        let replies = shutdownReplies
        shutdownReplies = []
        signals.forEach { $0.close() }
        signals = []
        if replies.isEmpty {
            loop.stop()
            return
        }
        var open = replies.count
        for connection in replies {
            connection.onClose = { [unowned self] in
                open -= 1
                if open == 0 { self.loop.stop() }
            }
            connection.send(["type": "ok", "message": "drover daemon stopped"])
            connection.finish()
        }
    }
}

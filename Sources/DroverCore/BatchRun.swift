import CLibUV
import DroverWire
import Glibc

/// `drover run`: every task of a manifest through an in-process supervisor, then
/// summary.json and joblog.tsv beside the task folders.
public final class BatchRun {
    public struct Options: Sendable {
        public var resultsDirectory: String
        public var resume = false
        /// With `resume`: rows lost in an earlier run run again too.
        public var retryFailed = false
        public var haltOnError = false
        public var durable = true
        public init(resultsDirectory: String) {
            self.resultsDirectory = resultsDirectory
        }
    }

    /// Counts by status, as the progress display shows them.
    public struct Counts: Sendable {
        public var total = 0
        public var pending = 0
        public var running = 0
        public var completed = 0
        public var error = 0
        public var cancelled = 0
        public var done: Int { completed + error + cancelled }
    }

    public struct Row: Sendable {
        public let line: Int
        public let snapshot: TaskSnapshot
        /// Completed by an earlier run into the same folder (`--resume`).
        public let carriedOver: Bool
    }

    public struct Summary: Sendable {
        public let rows: [Row]
        public let counts: Counts
        public let wallMs: Int64
        public let resultsDirectory: String

        /// SPEC section 7's exit codes for a run.
        public var exitCode: Int32 {
            if counts.error > 0 { return 1 }
            if counts.cancelled > 0 { return 4 }
            return 0
        }
    }

    public let loop: EventLoop
    public let supervisor: Supervisor
    private let entries: [ManifestEntry]
    private let options: Options
    private var statuses: [String: TaskStatus] = [:]
    private var lineOfTask: [String: Int] = [:]
    private var resumed = BatchResume()
    public private(set) var counts = Counts()
    private var halted = false
    /// The config's `onComplete`, run for each row that ends, as under the daemon.
    private let hook: CompletionHook?

    /// Every reported state change, with the counts after it.
    public var onProgress: (TaskSnapshot, Counts) -> Void = { _, _ in }

    public init(entries: [ManifestEntry], config: DroverConfig, launch: WorkerLaunch, options: Options) throws(Engine.FolderError) {
        let engine = try Engine(folder: options.resultsDirectory, config: config, launch: launch, policy: .batch, durable: options.durable)
        loop = engine.loop
        supervisor = engine.supervisor
        self.entries = entries
        self.options = options
        hook = config.onComplete.map { CompletionHook(loop: engine.loop, launch: launch, arguments: $0) }
        if options.resume { resumed = BatchResume.read(supervisor: supervisor, entries: entries, retryFailed: options.retryFailed) }
    }

    /// The manifest the folder's rows come from, kept beside them (`--retry-failed` reads it).
    public static let manifestCopy = "manifest.jsonl"

    /// Keeps a copy of the manifest in the results folder.
    public func keepManifest(_ bytes: [UInt8]) throws(FileError) {
        try supervisor.store.folder.replace(Self.manifestCopy, bytes, sync: false)
    }

    /// Runs every task to its end and writes the summary files.
    public func run() throws(FileError) -> Summary {
        let startMs = Clock.wallMs()
        counts.total = entries.count
        counts.completed = resumed.completed.count
        counts.error = resumed.lost.count
        supervisor.onReport = { [weak self] snapshot in self?.reported(snapshot) }
        // Halting acts on the transition itself, before the failed task's slot starts another.
        supervisor.onEnded = { [weak self] snapshot in
            guard let self, self.options.haltOnError, snapshot.status == .error, !self.halted else { return }
            self.halted = true
            self.supervisor.stopStartingTasks()
            self.supervisor.cancelAll(reason: .shutdown, message: "halted after task \(snapshot.id) (line \(self.lineOfTask[snapshot.id] ?? 0)) failed")
        }
        let interrupts = [SIGINT, SIGTERM].map { signal in
            LoopSignal(loop: loop, signal: signal) { [weak self] in
                self?.supervisor.cancelAll(reason: .user, message: "interrupted by \(signalName(signal))")
            }
        }
        var submitted: [(Int, String)] = []
        // Rows go in an order where each follows the rows it waits for; their names become
        // the task ids those rows got (an earlier run's, for rows carried over).
        var idOfName: [String: String] = [:]
        var carriedOverOfName: [String: TaskSnapshot] = [:]
        for entry in entries {
            guard let name = entry.name, let snapshot = resumed.completed[entry.line] ?? resumed.lost[entry.line] else { continue }
            carriedOverOfName[name] = snapshot
        }
        for entry in ManifestGraph.order(entries) where resumed.completed[entry.line] == nil && resumed.lost[entry.line] == nil {
            var request = entry.request
            request.after = []
            var unqueued: String?
            for name in entry.after {
                if idOfName[name] == nil, let earlier = carriedOverOfName[name] {
                    supervisor.adopt(ended: earlier, request: nil)
                    idOfName[name] = earlier.id
                }
                guard let id = idOfName[name] else {
                    unqueued = name
                    break
                }
                request.after.append(id)
                request.prompt = request.prompt.replacing("{result:\(name)}", with: "{result:\(id)}")
                if request.worktree.baseTask == name { request.worktree.base = "@" + id }
            }
            if let unqueued {
                writeStandardError("drover: line \(entry.line): not queued: the row \"\(unqueued)\" it waits for could not be queued\n")
                continue
            }
            request.extra["manifest_line"] = .number(Double(entry.line))
            request.extra["manifest_row"] = .string(entry.identity)
            let tags: JSONObject = ["manifest_row": .string(entry.identity), "manifest_line": .number(Double(entry.line))]
            do {
                let snapshot = try supervisor.submit(request, journalTags: tags, reusing: resumed.unstarted[entry.line])
                lineOfTask[snapshot.id] = entry.line
                statuses[snapshot.id] = .pending
                counts.pending += 1
                submitted.append((entry.line, snapshot.id))
                if let name = entry.name { idOfName[name] = snapshot.id }
            } catch {
                // Agents were checked when the manifest was parsed; report anything else.
                writeStandardError("drover: line \(entry.line): \(error)\n")
            }
        }
        if counts.done < counts.total { loop.run() }
        // The last rows' onComplete commands may still run: they end before the run does,
        // since nothing of a run outlives it.
        if let hook, !hook.isIdle {
            hook.onIdle = { [loop] in loop.stop() }
            loop.run()
        }
        interrupts.forEach { $0.close() }
        supervisor.store.close()

        var rows: [Row] = []
        for entry in entries {
            if let snapshot = resumed.completed[entry.line] ?? resumed.lost[entry.line] {
                rows.append(Row(line: entry.line, snapshot: snapshot, carriedOver: true))
            }
        }
        for (line, id) in submitted {
            if let snapshot = supervisor.snapshot(id) { rows.append(Row(line: line, snapshot: snapshot, carriedOver: false)) }
        }
        rows.sort { $0.line < $1.line }
        let summary = Summary(rows: rows, counts: counts, wallMs: Clock.wallMs() - startMs, resultsDirectory: supervisor.store.root)
        try writeSummary(summary, startMs: startMs)
        try writeJoblog(rows.filter { !$0.carriedOver })
        return summary
    }

    private func reported(_ snapshot: TaskSnapshot) {
        let previous = statuses[snapshot.id]
        guard previous != snapshot.status else { return }
        statuses[snapshot.id] = snapshot.status
        if snapshot.status.isTerminal { hook?.run(for: snapshot) }
        adjust(previous, by: -1)
        adjust(snapshot.status, by: 1)
        onProgress(snapshot, counts)
        if counts.done == counts.total { loop.stop() }
    }

    private func adjust(_ status: TaskStatus?, by delta: Int) {
        switch status {
        case .pending: counts.pending += delta
        case .running: counts.running += delta
        case .completed: counts.completed += delta
        case .error: counts.error += delta
        case .cancelled: counts.cancelled += delta
        case nil: break
        }
    }

    private func writeSummary(_ summary: Summary, startMs: Int64) throws(FileError) {
        let c = summary.counts
        var tasks: [JSONValue] = []
        for row in summary.rows {
            let s = row.snapshot
            var object: JSONObject = [
                "line": .number(Double(row.line)), "task_id": .string(s.id), "agent": .string(s.agent),
                "description": .string(s.description), "status": .string(s.status.rawValue),
                "reason": JSONValue(s.reason?.rawValue), "error": JSONValue(s.error),
            ]
            object["duration_ms"] = s.endedMs != nil ? s.durationMs.map { .number(Double($0)) } ?? .null : .null
            object["exit_code"] = s.exitCode.map { .number(Double($0)) } ?? .null
            object["result_path"] = JSONValue(s.resultPath)
            object["usage"] = .object(s.usage.json)
            if row.carriedOver { object["resumed"] = true }
            tasks.append(.object(object))
        }
        let spent = summary.rows.reduce(TaskUsage()) { $0 + $1.snapshot.usage }
        let document: JSONObject = [
            "started_at": .string(Clock.rfc3339(ms: startMs)), "wall_ms": .number(Double(summary.wallMs)),
            "total": .number(Double(c.total)),
            "counts": ["completed": .number(Double(c.completed)), "error": .number(Double(c.error)), "cancelled": .number(Double(c.cancelled))],
            "resumed": .number(Double(summary.rows.filter(\.carriedOver).count)),
            "usage": .object(spent.json),
            "exit_code": .number(Double(summary.exitCode)),
            "tasks": .array(tasks),
        ]
        var bytes: [UInt8] = []
        JSONWriter.writeObject(document, into: &bytes)
        bytes.append(0x0A)
        try FileSystem.writeAtomically(supervisor.store.root + "/summary.json", bytes, sync: options.durable)
    }

    /// GNU parallel's joblog: a run into a folder starts it afresh, as `parallel --joblog`
    /// overwrites its file; `--resume` and `--retry-failed` append, as parallel's do. Send and
    /// Receive are 0, as for parallel's local jobs (it counts only --transfer and --return).
    private func writeJoblog(_ rows: [Row]) throws(FileError) {
        let path = supervisor.store.root + "/joblog.tsv"
        let appending = options.resume && FileSystem.exists(path)
        var text = appending ? "" : "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
        func seconds(_ ms: Int64) -> String {
            let whole = ms / 1000
            let frac = String(ms % 1000)
            return "\(whole)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        let argvOfLine = Dictionary(entries.map { ($0.line, $0.request.command) }, uniquingKeysWith: { first, _ in first })
        for row in rows {
            let s = row.snapshot
            // A raw command as a shell would read it back; an agent's task by its agent and description.
            let command = (argvOfLine[row.line].flatMap { $0 }.map { shellLine($0) } ?? "\(s.agent): \(s.description)")
                .replacingAll("\t", with: " ").replacingAll("\n", with: " ")
            text += "\(row.line)\t:\t\(seconds(s.startedMs ?? s.createdMs))\t\(seconds(s.durationMs ?? 0))\t0\t0\t\(s.exitCode ?? -1)\t\(s.signal ?? 0)\t\(command)\n"
        }
        if appending {
            try FileSystem.append(path, Array(text.utf8))
        } else {
            try FileSystem.writeAtomically(path, Array(text.utf8), sync: options.durable)
        }
    }
}

/// A signal watched on the loop (it does not keep the loop running by itself). Closing or
/// dropping it stops the watch; the handle's memory is freed by libuv's close callback.
public final class LoopSignal {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private let action: () -> Void
    private var closed = false

    public init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) {
        self.action = action
        handle = allocateHandle(uv_signal_t.self)
        uv_signal_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_signal_start(handle, { handle, _ in
            Unmanaged<LoopSignal>.fromOpaque(handle!.pointee.data).takeUnretainedValue().action()
        }, signal)
        uv_unref(asHandle(handle))
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        closeAndFree(handle)
    }
}

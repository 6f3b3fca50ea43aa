import DroverCore
import DroverDaemon
import DroverWire

/// `drover hook claude`: tells the model of a Claude Code session about the drover tasks
/// it launched, since Claude Code drops the MCP server's notifications.
///
/// - PostToolUse, UserPromptSubmit: the tasks of the session that ended since last told,
///   as `additionalContext` (each end told once).
/// - Stop: while tasks of the session have not ended (or ended untold), the stop is blocked
///   with a reason naming them, at most `limits.blocks` times and for at most
///   `limits.waitMs` after the first block, counted from the user's last prompt; then the
///   session may end.
///
/// It never starts a daemon: with none running, there is nothing to tell.
public struct ClaudeHook {
    public struct StopLimits: Sendable, Equatable {
        public var blocks: Int
        public var waitMs: Int

        public init(blocks: Int, waitMs: Int) {
            self.blocks = blocks
            self.waitMs = waitMs
        }

        public static let standard = StopLimits(blocks: 5, waitMs: 30 * 60_000)
    }

    let state: StateFolder
    let limits: StopLimits
    /// Told on stderr by the caller: why the hook stayed silent when that is worth knowing.
    public private(set) var notes: [String] = []

    public init(state: StateFolder, limits: StopLimits) {
        self.state = state
        self.limits = limits
    }

    static let endedHeading = "drover: background tasks of this Claude session ended:"
    static let openHeading = "drover: background tasks of this Claude session have not ended yet:"

    /// What to print for this event; nil for nothing.
    public mutating func respond(to input: ClaudeHookInput) throws(ClaudeHookError) -> ClaudeHookOutput? {
        if case .other = input.event { return nil }
        // No socket, no daemon: nothing was launched here that could have ended.
        guard FileSystem.exists(state.socket) else { return nil }
        let store = try ClaudeSessionStore(state: state, sessionID: input.sessionID)
        var record = store.load()
        let seen = seen(in: input, record: &record)
        record.absorb(seen)
        if case .userPromptSubmit = input.event { record.resetStopBlocks() }
        guard !record.open.isEmpty else {
            if case .stop = input.event { record.resetStopBlocks() }
            try store.save(record)
            return nil
        }
        guard let tasks = try statuses(of: record.open) else {
            try store.save(record)
            return nil
        }
        var ended: [TaskEnding] = []
        var running: [TaskDocument] = []
        var unknown: [String] = []
        for id in record.open {
            guard let task = tasks[id] else {
                unknown.append(id)
                continue
            }
            if task.status.isTerminal {
                ended.append(TaskEnding(taskID: id, description: task.json["description"]?.stringValue ?? "", agent: task.json["agent"]?.stringValue,
                                        status: task.status, reason: task.json["reason"]?.stringValue))
            } else {
                running.append(task)
            }
        }
        // Tasks of another state folder (or long removed) are not this hook's to tell.
        record.markTold(unknown)

        switch input.event {
        case .postToolUse, .userPromptSubmit:
            guard !ended.isEmpty else {
                try store.save(record)
                return nil
            }
            record.markTold(ended.map(\.taskID))
            try store.save(record)
            return .additionalContext(event: input.event.name, text: Self.endedText(ended))
        case .stop:
            guard !ended.isEmpty || !running.isEmpty else {
                record.resetStopBlocks()
                try store.save(record)
                return nil
            }
            let now = Clock.wallMs()
            let waitedMs = record.firstStopBlockMs.map { now - $0 } ?? 0
            guard record.stopBlocks < limits.blocks, waitedMs < Int64(limits.waitMs) else {
                notes.append("letting the session stop with \(running.count) drover task(s) not ended (asked \(record.stopBlocks) time(s) since the last prompt)")
                try store.save(record)
                return nil
            }
            record.stopBlocks += 1
            if record.firstStopBlockMs == nil { record.firstStopBlockMs = now }
            record.markTold(ended.map(\.taskID))
            // Saved before answering: a block that is not counted could repeat forever.
            try store.save(record)
            return .blockStop(reason: stopReason(ended: ended, running: running, blocksLeft: limits.blocks - record.stopBlocks))
        case .other:
            return nil
        }
    }

    /// What drover's answers told the model since the last run: from the transcript, and
    /// from the answer of the tool just used (not in the transcript yet at PostToolUse).
    private mutating func seen(in input: ClaudeHookInput, record: inout ClaudeSessionRecord) -> DroverToolText {
        var seen = DroverToolText()
        if let path = input.transcriptPath {
            if record.transcriptPath != path {
                record.transcriptPath = path
                record.transcriptOffset = 0
            }
            do {
                let scanned = try ClaudeTranscript.scan(path: path, from: record.transcriptOffset)
                seen.add(scanned.seen)
                record.transcriptOffset = scanned.offset
            } catch {
                // A session's first prompt comes before its transcript exists.
                if FileSystem.exists(path) { notes.append(error.message) }
            }
        }
        if case .postToolUse(let tool, let response) = input.event, Self.isDroverTool(tool) {
            for text in ClaudeTranscript.texts(in: response) { seen.add(DroverToolText.scan(text)) }
        }
        return seen
    }

    /// `mcp__SERVER__delegate_task` and the like, whatever the server is called.
    static func isDroverTool(_ name: String) -> Bool {
        name.hasPrefix("mcp__") && DroverToolNames.all.contains { name.hasSuffix("__" + $0) }
    }

    /// The tasks by id; nil when no daemon answers (the session goes on untold).
    private func statuses(of ids: [String]) throws(ClaudeHookError) -> [String: TaskDocument]? {
        do {
            let answer: TasksReply
            do {
                answer = try ControlClient.connect(state: state, autostart: false).call(StatusRequest(ids: ids))
            } catch where error.exitCode == 6 {
                // One of them is not the daemon's ("no such task"): every row, to find the rest.
                answer = try ControlClient.connect(state: state, autostart: false).call(StatusRequest())
            }
            var tasks: [String: TaskDocument] = [:]
            let wanted = Set(ids)
            for task in answer.tasks where wanted.contains(task.id) { tasks[task.id] = task }
            return tasks
        } catch where error.exitCode == 5 && error.message.hasPrefix("no drover daemon answers") {
            return nil
        } catch {
            throw ClaudeHookError("asking the daemon: \(error.message)")
        }
    }

    static func endedText(_ ended: [TaskEnding]) -> String {
        ([endedHeading] + ended.map(TaskEndingText.line)).joined(separator: "\n")
    }

    private func stopReason(ended: [TaskEnding], running: [TaskDocument], blocksLeft: Int) -> String {
        var parts: [String] = []
        if !ended.isEmpty { parts.append(Self.endedText(ended)) }
        if !running.isEmpty {
            let lines = running.map { task in
                TaskEndingText.openLine(taskID: task.id, description: task.json["description"]?.stringValue ?? "",
                                        agent: task.json["agent"]?.stringValue, status: TaskText.status(task.json))
            }
            let example = running[0].id
            parts.append(([Self.openHeading] + lines).joined(separator: "\n"))
            parts.append("""
                Before you finish, wait for them: background_output with task_id "\(example)" and block: true \
                waits until that task ends (up to 10 minutes a call). Or stop those you no longer need with background_cancel.
                """)
        } else {
            parts.append("Read the results that matter to your answer before you finish.")
        }
        parts.append(blocksLeft > 0
            ? "(drover keeps this session from stopping at most \(blocksLeft) more time(s) until the next prompt.)"
            : "(drover will not keep this session from stopping again until the next prompt.)")
        return parts.joined(separator: "\n\n")
    }
}

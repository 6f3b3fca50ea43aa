import DroverCore
import DroverWire
import Glibc

/// The control protocol's requests (see README, "Driving drover without the CLI"). Each
/// answer is a frame with `type` "ok", "error" (with `code`, the CLI's exit status, and
/// `message`) or, for streams, "progress" / "event" / "lines" frames before the last one.
extension DaemonServer {
    func handle(_ request: JSONObject, on connection: ControlConnection) {
        let type = request["type"]?.stringValue ?? ""
        switch type {
        case "ping": reply(connection, ["type": "ok", "pid": .number(Double(getpid()))])
        case "launch": launch(request, connection)
        case "status": status(request, connection)
        case "output": output(request, connection)
        case "cancel": cancel(request, connection)
        case "continue": continueSession(request, connection)
        case "wait": wait(request, connection)
        case "logs": logs(request, connection)
        case "events": events(request, connection)
        case "shutdown": shutdown(replyTo: connection)
        case "stats": stats(connection)
        default: fail(connection, 2, "unknown request type \"\(type)\"")
        }
    }

    private func reply(_ connection: ControlConnection, _ frame: JSONObject) {
        connection.send(frame)
        connection.finish()
    }

    private func fail(_ connection: ControlConnection, _ code: Int, _ message: String) {
        reply(connection, ["type": "error", "code": .number(Double(code)), "message": .string(message)])
    }

    private func ids(_ request: JSONObject) -> [String] {
        request["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// The first id that is not a known task, phrased for the user.
    private func unknownTask(_ ids: [String]) -> String? {
        for id in ids where current(id) == nil {
            if TaskIdentifiers.isSessionID(id) { return "\(id) is a session id; give a task id (bg_...)" }
            return "no such task: \(id)"
        }
        return nil
    }

    // MARK: stats

    /// Read-only figures for tests and monitoring: slots per pool, task counts, and the
    /// daemon's open descriptors (this connection's socket included).
    private func stats(_ connection: ControlConnection) {
        let pools: [JSONValue] = supervisor.poolUsage.map { usage in
            .object([
                "id": .string(usage.pool), "limit": .number(Double(usage.limit)),
                "running": .number(Double(usage.running)), "waiting": .number(Double(usage.waiting)),
            ])
        }
        // Listing /proc/self/fd opens one more descriptor, which is not counted.
        reply(connection, [
            "type": "ok", "pid": .number(Double(getpid())), "running": .number(Double(supervisor.runningCount)),
            "pending": .number(Double(supervisor.pendingCount)), "slots_in_use": .number(Double(supervisor.slotsInUse)),
            "tasks": .number(Double(knownTaskIDs.count)), "pools": .array(pools),
            "open_fds": .number(Double(FileSystem.list("/proc/self/fd").count - 1)),
        ])
    }

    // MARK: launch and continue

    private func launch(_ request: JSONObject, _ connection: ControlConnection) {
        guard !shuttingDown else { return fail(connection, 5, "the daemon is shutting down") }
        var task: TaskRequest
        let prompt = request["prompt"]?.stringValue ?? ""
        if let argv = request["command"]?.arrayValue {
            task = TaskRequest(command: argv.compactMap(\.stringValue), prompt: prompt)
        } else {
            guard let agent = request["agent"]?.stringValue else { return fail(connection, 2, "launch needs \"agent\" or \"command\"") }
            task = TaskRequest(agent: agent, prompt: prompt)
        }
        task.description = request["description"]?.stringValue
        task.provider = request["provider"]?.stringValue
        task.model = request["model"]?.stringValue
        task.cwd = request["cwd"]?.stringValue
        task.timers.taskTtl = request["ttl_ms"]?.intValue
        for (name, value) in request["env"]?.objectValue?.members ?? JSONObject().members {
            if let value = value.stringValue { task.env[name] = value }
        }
        if let session = request["session"]?.stringValue {
            guard taskIDs(inSession: session) != nil else { return fail(connection, 6, "no such session: \(session)") }
            task.sessionID = session
            task.resume = true
        }
        submit(task, connection)
    }

    private func submit(_ task: TaskRequest, _ connection: ControlConnection) {
        // Acknowledged only once task.json is on disk: nothing acknowledged is ever lost. A
        // task that could not be written is not acknowledged, and never runs either.
        var launched: TaskSnapshot?
        do {
            launched = try supervisor.submit(task) { [unowned self] failure in
                guard !connection.isClosed, let snapshot = launched else { return }
                if let failure { return self.fail(connection, 5, "cannot launch: \(failure)") }
                self.reply(connection, [
                    "type": "ok", "task_id": .string(snapshot.id), "session_id": .string(snapshot.sessionID),
                    "status": .string((self.current(snapshot.id) ?? snapshot).status.rawValue),
                ])
            }
        } catch {
            return fail(connection, 2, error.description)
        }
    }

    private func continueSession(_ request: JSONObject, _ connection: ControlConnection) {
        guard !shuttingDown else { return fail(connection, 5, "the daemon is shutting down") }
        guard let session = request["session"]?.stringValue else { return fail(connection, 2, "continue needs \"session\"") }
        guard let prompt = request["prompt"]?.stringValue, !prompt.isEmpty else { return fail(connection, 2, "continue needs a prompt") }
        guard let taskIDs = taskIDs(inSession: session) else {
            if TaskIdentifiers.isTaskID(session) { return fail(connection, 6, "\(session) is a task id; give its session id (ses_...)") }
            return fail(connection, 6, "no such session: \(session)")
        }
        // A live session gets the prompt as a frame; it is never silently dropped.
        for id in taskIDs.reversed() where current(id)?.status == .running {
            switch supervisor.deliverPrompt(id, text: prompt) {
            case .delivered:
                return reply(connection, [
                    "type": "ok", "task_id": .string(id), "session_id": .string(session), "status": "running", "delivered": true,
                ])
            case .backlogFull(let queued, let limit):
                return fail(connection, 2, "task \(id) has not read the \(queued) bytes it was sent before; another \(prompt.utf8.count) would pass maxBufferedBytes (\(limit))")
            case .notRunning:
                continue
            }
        }
        guard let last = taskIDs.last, var task = supervisor.request(of: last) else { return fail(connection, 6, "session \(session) cannot be continued: its last task's request is unreadable") }
        task.prompt = prompt
        task.description = request["description"]?.stringValue ?? String(prompt.split(separator: "\n").first ?? "")
        task.sessionID = session
        task.resume = true
        submit(task, connection)
    }

    // MARK: queries

    func row(_ snapshot: TaskSnapshot) -> JSONObject {
        var row: JSONObject = [
            "id": .string(snapshot.id), "session_id": .string(snapshot.sessionID), "agent": .string(snapshot.agent),
            "description": .string(snapshot.description), "status": .string(snapshot.status.rawValue),
            "reason": JSONValue(snapshot.reason?.rawValue),
        ]
        row["duration_ms"] = snapshot.durationMs.map { .number(Double($0)) } ?? .null
        row["created_at"] = .string(Clock.rfc3339(ms: snapshot.createdMs))
        return row
    }

    private func status(_ request: JSONObject, _ connection: ControlConnection) {
        let asked = ids(request)
        if let problem = unknownTask(asked) { return fail(connection, 6, problem) }
        if asked.isEmpty {
            // Assembled from bytes: with thousands of tasks, re-encoding every row each
            // time would dominate the answer.
            var frame: [UInt8] = [0, 0, 0, 0]
            frame.append(contentsOf: #"{"type":"ok","tasks":["#.utf8)
            var first = true
            for id in knownTaskIDs {
                guard let snapshot = current(id) else { continue }
                if !first { frame.append(UInt8(ascii: ",")) }
                first = false
                if let cached = endedRows[id] {
                    frame.append(contentsOf: cached)
                } else {
                    var bytes: [UInt8] = []
                    JSONWriter.writeObject(row(snapshot), into: &bytes)
                    if snapshot.status.isTerminal { endedRows[id] = bytes }
                    frame.append(contentsOf: bytes)
                }
            }
            frame.append(contentsOf: "]}".utf8)
            let length = UInt32(frame.count - 4)
            frame.replaceSubrange(0..<4, with: FrameEncoder.header(length: length))
            connection.send(encoded: frame)
            return connection.finish()
        }
        let tasks = asked.compactMap { current($0).map { JSONValue.object($0.json()) } }
        reply(connection, ["type": "ok", "tasks": .array(tasks)])
    }

    /// A task with its result text when it has one.
    func withResult(_ snapshot: TaskSnapshot) -> JSONObject {
        var frame: JSONObject = ["type": "ok", "task": .object(snapshot.json())]
        if let path = snapshot.resultPath, let bytes = try? FileSystem.read(path) {
            frame["result"] = .string(String(decoding: bytes, as: UTF8.self))
        }
        return frame
    }

    private func output(_ request: JSONObject, _ connection: ControlConnection) {
        guard let id = request["id"]?.stringValue else { return fail(connection, 2, "output needs \"id\"") }
        if let problem = unknownTask([id]) { return fail(connection, 6, problem) }
        let snapshot = current(id)!
        if snapshot.status.isTerminal || request["wait"]?.boolValue != true {
            return reply(connection, withResult(snapshot))
        }
        // Event-driven: answered in the loop turn in which the task's end is reported.
        let timer = request["timeout_ms"]?.intValue.map { ms -> LoopTimer in
            let timer = LoopTimer(loop: loop)
            timer.start(after: ms) { [unowned self] in
                if !connection.isClosed { self.reply(connection, ["type": "timeout", "task": .object(self.current(id)!.json())]) }
            }
            return timer
        }
        whenEnded(id) { [unowned self] snapshot in
            timer?.stop()
            if !connection.isClosed { self.reply(connection, self.withResult(snapshot)) }
        }
    }

    private func cancel(_ request: JSONObject, _ connection: ControlConnection) {
        let all = request["all"]?.boolValue == true
        let asked = all ? supervisor.openTaskIDs : ids(request)
        if let problem = unknownTask(asked) { return fail(connection, 6, problem) }
        let open = asked.filter { !(current($0)?.status.isTerminal ?? true) }
        for id in open { supervisor.cancel(id, reason: .user) }
        // Answered once every one of them is reaped and written.
        var remaining = Set(open)
        let answer = { [unowned self] in
            let tasks = asked.compactMap { self.current($0).map { JSONValue.object(self.row($0)) } }
            self.reply(connection, ["type": "ok", "tasks": .array(tasks), "cancelled": .array(open.map { .string($0) })])
        }
        if remaining.isEmpty { return answer() }
        for id in open {
            whenEnded(id) { snapshot in
                remaining.remove(snapshot.id)
                if remaining.isEmpty { answer() }
            }
        }
    }

    private func wait(_ request: JSONObject, _ connection: ControlConnection) {
        let all = request["all"]?.boolValue == true
        let asked = all ? supervisor.openTaskIDs : ids(request)
        if let problem = unknownTask(asked) { return fail(connection, 6, problem) }
        let summary = { [unowned self] () -> JSONObject in
            var counts = (done: 0, running: 0, pending: 0, failed: 0, cancelled: 0)
            for id in asked {
                switch self.current(id)?.status {
                case .completed: counts.done += 1
                case .error: counts.done += 1; counts.failed += 1
                case .cancelled: counts.done += 1; counts.cancelled += 1
                case .running: counts.running += 1
                default: counts.pending += 1
                }
            }
            return [
                "total": .number(Double(asked.count)), "done": .number(Double(counts.done)), "running": .number(Double(counts.running)),
                "pending": .number(Double(counts.pending)), "failed": .number(Double(counts.failed)), "cancelled": .number(Double(counts.cancelled)),
            ]
        }
        let finished = { [unowned self] () -> Bool in asked.allSatisfy { self.current($0)?.status.isTerminal ?? true } }
        let final = { [unowned self] (type: String) -> JSONObject in
            var frame: JSONObject = ["type": .string(type), "tasks": .array(asked.compactMap { self.current($0).map { .object(self.row($0)) } })]
            for (key, value) in summary().members { frame[key] = value }
            return frame
        }
        if finished() { return reply(connection, final("ok")) }
        let watched = Set(asked)
        var timer: LoopTimer?
        let token = subscribe { [unowned self] snapshot in
            guard watched.contains(snapshot.id), !connection.isClosed else { return }
            if finished() {
                timer?.stop()
                self.reply(connection, final("ok"))
            } else {
                var progress = summary()
                progress["type"] = "progress"
                connection.send(progress)
            }
        }
        connection.onClose = { [unowned self] in
            timer?.stop()
            self.unsubscribe(token)
        }
        var first = summary()
        first["type"] = "progress"
        connection.send(first)
        if let ms = request["timeout_ms"]?.intValue {
            let t = LoopTimer(loop: loop)
            t.start(after: ms) { [unowned self] in self.reply(connection, final("timeout")) }
            timer = t
        }
    }

    private func logs(_ request: JSONObject, _ connection: ControlConnection) {
        guard let id = request["id"]?.stringValue else { return fail(connection, 2, "logs needs \"id\"") }
        if let problem = unknownTask([id]) { return fail(connection, 6, problem) }
        let follow = request["follow"]?.boolValue == true && !(current(id)?.status.isTerminal ?? true)
        // Lines recorded so far are all in the file once the current batch is written;
        // lines after them arrive live, so none is sent twice or lost.
        let recordedBefore = transcriptLines[id] ?? 0
        var live: [[UInt8]] = []
        var caughtUp = false
        var token: Int?
        if follow {
            token = subscribeTranscript(id) { line in
                if caughtUp {
                    connection.send(["type": "lines", "text": .string(String(decoding: line, as: UTF8.self))])
                } else {
                    live.append(line)
                }
            }
            whenEnded(id) { [unowned self] _ in
                if let token { self.unsubscribeTranscript(id, token) }
                if caughtUp { self.reply(connection, ["type": "ok"]) }
            }
            connection.onClose = { [unowned self] in if let token { self.unsubscribeTranscript(id, token) } }
        }
        store.whenWritten { [unowned self] in
            let bytes = (try? FileSystem.read(self.store.transcriptFile(id))) ?? []
            var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: true)
            if follow { lines = Array(lines.prefix(recordedBefore)) }
            self.sendLines(lines.map { Array($0) + [0x0A] }, to: connection)
            guard follow else { return self.reply(connection, ["type": "ok"]) }
            self.sendLines(live, to: connection)
            live = []
            caughtUp = true
            if self.current(id)?.status.isTerminal ?? true { self.reply(connection, ["type": "ok"]) }
        }
    }

    /// Sends text lines in frames of at most about 1 MiB.
    private func sendLines(_ lines: [[UInt8]], to connection: ControlConnection) {
        var chunk: [UInt8] = []
        for line in lines {
            chunk.append(contentsOf: line)
            if chunk.count > 1 << 20 {
                connection.send(["type": "lines", "text": .string(String(decoding: chunk, as: UTF8.self))])
                chunk = []
            }
        }
        if !chunk.isEmpty { connection.send(["type": "lines", "text": .string(String(decoding: chunk, as: UTF8.self))]) }
    }

    private func events(_ request: JSONObject, _ connection: ControlConnection) {
        if request["follow"]?.boolValue == true {
            let token = subscribe { snapshot in
                connection.send([
                    "type": "event", "t": .number(Double(Clock.wallMs())), "task_id": .string(snapshot.id),
                    "session_id": .string(snapshot.sessionID), "status": .string(snapshot.status.rawValue),
                    "reason": JSONValue(snapshot.reason?.rawValue),
                ])
            }
            connection.onClose = { [unowned self] in self.unsubscribe(token) }
            connection.send(["type": "following"])
            return
        }
        store.whenWritten { [unowned self] in
            let bytes = (try? FileSystem.read(self.store.eventsFile)) ?? []
            self.sendLines(bytes.split(separator: 0x0A).map { Array($0) + [0x0A] }, to: connection)
            self.reply(connection, ["type": "ok"])
        }
    }
}

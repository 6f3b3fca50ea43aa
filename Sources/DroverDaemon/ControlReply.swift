import DroverCore
import DroverWire

/// An answer frame, or a stream's frames: read by the clients with `init(frame:)`, built by
/// the daemon with `frame()`. Answers may grow members, so readers leave unknown ones alone.
public protocol ControlReply: Sendable {
    init(frame: JSONObject) throws(FieldError)
    func frame() -> JSONObject
}

/// `{"type": "error", "code": N, "message": ...}`: the request was refused; `code` is the
/// CLI's exit status (2 bad request, 5 the daemon cannot serve it, 6 unknown task or session).
public struct ErrorReply: ControlReply, Error {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        code = try fields.count("code") ?? 1
        message = try fields.string("message") ?? "the daemon refused the request"
    }

    public func frame() -> JSONObject { ["type": "error", "code": .number(Double(code)), "message": .string(message)] }
}

/// A task as an answer carries it: a status row or its whole task.json document, as JSON
/// for tables and `--json`, with the members every reader relies on checked.
public struct TaskDocument: Sendable {
    public let json: JSONObject
    public let id: String
    public let sessionID: String
    public let status: TaskStatus

    public init(json: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: json)
        id = try fields.required("id", fields.string)
        sessionID = try fields.required("session_id", fields.string)
        let status = try fields.required("status", fields.string)
        guard let known = TaskStatus(rawValue: status) else { throw FieldError(field: "status", "unknown task status \"\(status)\"") }
        self.status = known
        self.json = json
    }

    /// The daemon's own, from a snapshot and the JSON made of it.
    init(_ snapshot: TaskSnapshot, json: JSONObject) {
        self.json = json
        id = snapshot.id
        sessionID = snapshot.sessionID
        status = snapshot.status
    }

    static func list(_ fields: FieldReader, _ key: String) throws(FieldError) -> [TaskDocument] {
        var tasks: [TaskDocument] = []
        for (index, item) in (try fields.required(key, fields.array)).enumerated() {
            guard case .object(let object) = item else { throw fields.mismatch("\(key)[\(index)]", "a task object", item) }
            tasks.append(try TaskDocument(json: object))
        }
        return tasks
    }
}

extension FieldReader {
    /// The frame's `type`, which must be one of `expected`.
    func frameType(_ expected: String...) throws(FieldError) -> String {
        let type = try string("type") ?? ""
        guard expected.contains(type) else {
            throw FieldError(field: "type", "expected a \(expected.map { "\"\($0)\"" }.joined(separator: " or ")) frame, found \"\(type)\"")
        }
        return type
    }
}

// MARK: one answer

/// `launch` and `continue`: the task that was queued, or (`delivered`) the running task
/// that got the prompt.
public struct LaunchReply: ControlReply {
    public var taskID: String
    public var sessionID: String
    public var status: TaskStatus
    public var delivered: Bool

    public init(taskID: String, sessionID: String, status: TaskStatus, delivered: Bool = false) {
        self.taskID = taskID
        self.sessionID = sessionID
        self.status = status
        self.delivered = delivered
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        taskID = try fields.required("task_id", fields.string)
        sessionID = try fields.required("session_id", fields.string)
        let status = try fields.required("status", fields.string)
        guard let known = TaskStatus(rawValue: status) else { throw FieldError(field: "status", "unknown task status \"\(status)\"") }
        self.status = known
        delivered = try fields.bool("delivered") ?? false
    }

    public func frame() -> JSONObject {
        var frame: JSONObject = ["type": "ok", "task_id": .string(taskID), "session_id": .string(sessionID), "status": .string(status.rawValue)]
        if delivered { frame["delivered"] = true }
        return frame
    }
}

/// `status`: rows of every task, or the named tasks' task.json documents.
public struct TasksReply: ControlReply {
    public var tasks: [TaskDocument]

    public init(tasks: [TaskDocument]) { self.tasks = tasks }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        tasks = try TaskDocument.list(fields, "tasks")
    }

    public func frame() -> JSONObject { ["type": "ok", "tasks": .array(tasks.map { .object($0.json) })] }

    /// The same frame from rows already encoded, header included: with thousands of tasks,
    /// encoding every row again for each answer would dominate it.
    static func encodedFrame(rows: [[UInt8]]) -> [UInt8] {
        var frame: [UInt8] = [0, 0, 0, 0]
        frame.append(contentsOf: #"{"type":"ok","tasks":["#.utf8)
        for (index, row) in rows.enumerated() {
            if index > 0 { frame.append(UInt8(ascii: ",")) }
            frame.append(contentsOf: row)
        }
        frame.append(contentsOf: "]}".utf8)
        frame.replaceSubrange(0..<4, with: FrameEncoder.header(length: UInt32(frame.count - 4)))
        return frame
    }
}

/// `output`: the task, with its result text once it has one; `timedOut` when a wait ran out.
public struct OutputReply: ControlReply {
    public var task: TaskDocument
    public var result: String?
    public var timedOut: Bool

    public init(task: TaskDocument, result: String?, timedOut: Bool = false) {
        self.task = task
        self.result = result
        self.timedOut = timedOut
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        timedOut = try fields.frameType("ok", "timeout") == "timeout"
        task = try TaskDocument(json: try fields.required("task", fields.object))
        result = try fields.string("result")
    }

    public func frame() -> JSONObject {
        var frame: JSONObject = ["type": timedOut ? "timeout" : "ok", "task": .object(task.json)]
        if let result { frame["result"] = .string(result) }
        return frame
    }
}

/// `cancel`, once every task named has ended: `cancelled` holds the ids this request
/// cancelled, `already_ended` those that had ended or whose end was already decided.
public struct CancelReply: ControlReply {
    public var tasks: [TaskDocument]
    public var cancelled: [String]
    public var alreadyEnded: [String]

    public init(tasks: [TaskDocument], cancelled: [String], alreadyEnded: [String]) {
        self.tasks = tasks
        self.cancelled = cancelled
        self.alreadyEnded = alreadyEnded
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        tasks = try TaskDocument.list(fields, "tasks")
        cancelled = try fields.required("cancelled") { key throws(FieldError) in try fields.strings(key, of: "task ids") }
        alreadyEnded = try fields.required("already_ended") { key throws(FieldError) in try fields.strings(key, of: "task ids") }
    }

    public func frame() -> JSONObject {
        ["type": "ok", "tasks": .array(tasks.map { .object($0.json) }),
         "cancelled": .array(cancelled.map { .string($0) }), "already_ended": .array(alreadyEnded.map { .string($0) })]
    }
}

public struct PingReply: ControlReply {
    public var pid: Int

    public init(pid: Int) { self.pid = pid }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        pid = try fields.required("pid") { key throws(FieldError) in try fields.count(key) }
    }

    public func frame() -> JSONObject { ["type": "ok", "pid": .number(Double(pid))] }
}

/// `stats`: the daemon's figures, read-only.
public struct StatsReply: ControlReply {
    public struct Pool: Sendable, Equatable {
        public var id: String
        public var limit: Int
        public var running: Int
        public var waiting: Int
        /// Below `limit` while rate limits hold it down (adaptive concurrency).
        public var effectiveLimit: Int
        /// When its cooldown ends (unix ms), while it cools down.
        public var cooldownUntilMs: Int64?

        public init(id: String, limit: Int, running: Int, waiting: Int, effectiveLimit: Int? = nil, cooldownUntilMs: Int64? = nil) {
            self.id = id
            self.limit = limit
            self.running = running
            self.waiting = waiting
            self.effectiveLimit = effectiveLimit ?? limit
            self.cooldownUntilMs = cooldownUntilMs
        }
    }

    public var pid: Int
    public var running: Int
    public var pending: Int
    public var slotsInUse: Int
    /// Tasks the daemon knows.
    public var tasks: Int
    public var pools: [Pool]
    /// The daemon's open descriptors, this connection's included.
    public var openDescriptors: Int
    /// Its open descriptors once it was up and before its first task: an idle daemon
    /// leaking none is back at this figure (without the connection that asks).
    public var baselineDescriptors: Int
    /// Each budget's standing: spent, reserved and remaining (`Budgets.Standing`'s members).
    public var budgets: [JSONObject] = []
    /// With a Slurm launcher: the cluster's licenses (`name`, `total`, `used`, `free`).
    public var licenses: [JSONObject]?
    /// Why the licenses could not be read.
    public var clusterProblem: String?
    /// The config in force (file and digest), for `drover doctor` to compare with the client's.
    public var config: ConfigIdentity?

    public init(pid: Int, running: Int, pending: Int, slotsInUse: Int, tasks: Int, pools: [Pool], openDescriptors: Int, baselineDescriptors: Int,
                budgets: [JSONObject] = []) {
        self.budgets = budgets
        self.baselineDescriptors = baselineDescriptors
        self.pid = pid
        self.running = running
        self.pending = pending
        self.slotsInUse = slotsInUse
        self.tasks = tasks
        self.pools = pools
        self.openDescriptors = openDescriptors
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        func number(_ key: String, in fields: FieldReader) throws(FieldError) -> Int {
            try fields.required(key) { key throws(FieldError) in try fields.count(key) }
        }
        pid = try number("pid", in: fields)
        running = try number("running", in: fields)
        pending = try number("pending", in: fields)
        slotsInUse = try number("slots_in_use", in: fields)
        tasks = try number("tasks", in: fields)
        openDescriptors = try number("open_fds", in: fields)
        baselineDescriptors = try number("baseline_fds", in: fields)
        budgets = (try fields.array("budgets") ?? []).compactMap(\.objectValue)
        licenses = try fields.array("licenses")?.compactMap(\.objectValue)
        clusterProblem = try fields.string("cluster_problem")
        if let identity = try fields.object("config") {
            let member = FieldReader(lenient: identity)
            config = ConfigIdentity(path: try member.string("path"), digest: try member.string("digest"))
        }
        pools = []
        for (index, item) in (try fields.required("pools", fields.array)).enumerated() {
            guard case .object(let object) = item else { throw fields.mismatch("pools[\(index)]", "an object", item) }
            let pool = FieldReader(lenient: object)
            let limit = try number("limit", in: pool)
            pools.append(Pool(id: try pool.required("id", pool.string), limit: limit,
                              running: try number("running", in: pool), waiting: try number("waiting", in: pool),
                              effectiveLimit: try pool.count("effective_limit") ?? limit,
                              cooldownUntilMs: try pool.string("cooldown_until").flatMap(Clock.parseRFC3339)))
        }
    }

    public func frame() -> JSONObject {
        let pools: [JSONValue] = pools.map { pool in
            ["id": .string(pool.id), "limit": .number(Double(pool.limit)), "effective_limit": .number(Double(pool.effectiveLimit)),
             "cooldown_until": pool.cooldownUntilMs.map { .string(Clock.rfc3339(ms: $0)) } ?? .null,
             "running": .number(Double(pool.running)), "waiting": .number(Double(pool.waiting))]
        }
        var frame: JSONObject = [
            "type": "ok", "pid": .number(Double(pid)), "running": .number(Double(running)), "pending": .number(Double(pending)),
            "slots_in_use": .number(Double(slotsInUse)), "tasks": .number(Double(tasks)), "pools": .array(pools),
            "open_fds": .number(Double(openDescriptors)), "baseline_fds": .number(Double(baselineDescriptors)),
            "budgets": .array(budgets.map { .object($0) })]
        if let licenses { frame["licenses"] = .array(licenses.map { .object($0) }) }
        if let clusterProblem { frame["cluster_problem"] = .string(clusterProblem) }
        if let config {
            frame["config"] = ["path": config.path.map { .string($0) } ?? .null, "digest": config.digest.map { .string($0) } ?? .null]
        }
        return frame
    }
}

/// `metrics`: the Prometheus text, as `GET /metrics` serves it.
public struct MetricsReply: ControlReply {
    public var text: String

    public init(text: String) { self.text = text }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        text = try fields.required("text", fields.string)
    }

    public func frame() -> JSONObject { ["type": "ok", "text": .string(text)] }
}

public struct ShutdownReply: ControlReply {
    public var message: String

    public init(message: String) { self.message = message }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        message = try fields.string("message") ?? "stopped"
    }

    public func frame() -> JSONObject { ["type": "ok", "message": .string(message)] }
}

/// `reload`: the config the daemon runs with now (nil: the built-in defaults).
public struct ReloadReply: ControlReply {
    public var config: String?

    public init(config: String?) { self.config = config }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        config = try fields.string("config")
    }

    public func frame() -> JSONObject {
        var frame: JSONObject = ["type": "ok"]
        if let config { frame["config"] = .string(config) }
        return frame
    }
}

// MARK: streams

/// How far a `wait` has come.
public struct WaitCounts: Sendable, Equatable {
    public var total = 0
    public var done = 0
    public var running = 0
    public var pending = 0
    public var failed = 0
    public var cancelled = 0

    public init() {}

    static let keys = ["total", "done", "running", "pending", "failed", "cancelled"]

    init(_ fields: FieldReader) throws(FieldError) {
        var values: [Int] = []
        for key in Self.keys { values.append(try fields.required(key) { key throws(FieldError) in try fields.count(key) }) }
        (total, done, running, pending, failed, cancelled) = (values[0], values[1], values[2], values[3], values[4], values[5])
    }

    func write(into frame: inout JSONObject) {
        for (key, value) in zip(Self.keys, [total, done, running, pending, failed, cancelled]) { frame[key] = .number(Double(value)) }
    }
}

/// `wait`'s frames: progress, then the end (or the timeout) with the tasks.
public enum WaitFrame: ControlReply {
    case progress(WaitCounts)
    case finished(WaitCounts, tasks: [TaskDocument], timedOut: Bool)

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        let type = try fields.frameType("progress", "ok", "timeout")
        let counts = try WaitCounts(fields)
        self = type == "progress" ? .progress(counts) : .finished(counts, tasks: try TaskDocument.list(fields, "tasks"), timedOut: type == "timeout")
    }

    public func frame() -> JSONObject {
        var frame: JSONObject
        switch self {
        case .progress(let counts):
            frame = ["type": "progress"]
            counts.write(into: &frame)
        case .finished(let counts, let tasks, let timedOut):
            frame = ["type": timedOut ? "timeout" : "ok", "tasks": .array(tasks.map { .object($0.json) })]
            counts.write(into: &frame)
        }
        return frame
    }
}

/// `logs`' frames: transcript lines (each ending in a newline), then the end.
public enum LogsFrame: ControlReply {
    case lines(String)
    case end

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        self = try fields.frameType("lines", "ok") == "ok" ? .end : .lines(try fields.required("text", fields.string))
    }

    public func frame() -> JSONObject {
        switch self {
        case .lines(let text): ["type": "lines", "text": .string(text)]
        case .end: ["type": "ok"]
        }
    }
}

/// `events`' frames: without `follow`, lines of events.jsonl then the end; with it,
/// `following` and then one event per state change.
public enum EventsFrame: ControlReply {
    case lines(String)
    case end
    case following
    case event(TaskEvent)
    /// A pool's cooldown began or ended.
    case pool(PoolEvent)

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        switch try fields.frameType("lines", "ok", "following", "event") {
        case "lines": self = .lines(try fields.required("text", fields.string))
        case "following": self = .following
        case "event" where frame["pool"] != nil && frame["task_id"] == nil:
            guard let event = PoolEvent(json: frame) else { throw FieldError(field: "status", "a pool's event needs a known status") }
            self = .pool(event)
        case "event":
            // The same shape as an events.jsonl line (TaskEvent), with its checks.
            _ = try fields.required("t") { key throws(FieldError) in try fields.count(key) }
            let status = try fields.required("status", fields.string)
            guard TaskStatus(rawValue: status) != nil else { throw FieldError(field: "status", "unknown task status \"\(status)\"") }
            guard let event = TaskEvent(json: frame) else { throw FieldError(field: "task_id", "an event needs task_id and session_id") }
            self = .event(event)
        default: self = .end
        }
    }

    public func frame() -> JSONObject {
        switch self {
        case .lines(let text): return ["type": "lines", "text": .string(text)]
        case .end: return ["type": "ok"]
        case .following: return ["type": "following"]
        case .event(let event):
            var frame: JSONObject = ["type": "event"]
            for (key, value) in event.json.members { frame[key] = value }
            return frame
        case .pool(let event):
            var frame: JSONObject = ["type": "event"]
            for (key, value) in event.json.members { frame[key] = value }
            return frame
        }
    }
}

/// `clean`: the tasks removed (or, for a dry run, that would be), and those kept, each with why.
public struct CleanReply: ControlReply {
    public struct Skipped: Sendable, Equatable {
        public var id: String
        public var reason: String

        public init(id: String, reason: String) {
            self.id = id
            self.reason = reason
        }
    }

    public var removed: [String]
    public var skipped: [Skipped]
    public var dryRun: Bool

    public init(removed: [String], skipped: [Skipped], dryRun: Bool) {
        self.removed = removed
        self.skipped = skipped
        self.dryRun = dryRun
    }

    public init(frame: JSONObject) throws(FieldError) {
        let fields = FieldReader(lenient: frame)
        _ = try fields.frameType("ok")
        removed = try fields.required("removed") { key throws(FieldError) in try fields.strings(key, of: "task ids") }
        dryRun = try fields.bool("dry_run") ?? false
        skipped = []
        for (index, item) in (try fields.required("skipped", fields.array)).enumerated() {
            guard let object = item.objectValue, let id = object["id"]?.stringValue, let reason = object["reason"]?.stringValue else {
                throw FieldError(field: "skipped.\(index)", "expected {\"id\", \"reason\"}")
            }
            skipped.append(Skipped(id: id, reason: reason))
        }
    }

    public func frame() -> JSONObject {
        ["type": "ok", "removed": .array(removed.map { .string($0) }), "dry_run": .bool(dryRun),
         "skipped": .array(skipped.map { .object(["id": .string($0.id), "reason": .string($0.reason)]) })]
    }
}

import DroverCore
import DroverWire

/// A control request as the daemon acts on it: one case per request type, each with a
/// typed payload. `decode` is the only way in from the wire, and checks every member, so a
/// malformed request never reaches a handler (see README, "the control protocol").
public enum ControlRequest: Sendable {
    case launch(LaunchRequest)
    case status(StatusRequest)
    case output(OutputRequest)
    case cancel(CancelRequest)
    case `continue`(ContinueRequest)
    case wait(WaitRequest)
    case logs(LogsRequest)
    case events(EventsRequest)
    case shutdown(ShutdownRequest)
    case ping(PingRequest)
    case stats(StatsRequest)
    case restart(RestartRequest)
    case reload(ReloadRequest)
    case clean(CleanRequest)
    case metrics(MetricsRequest)

    static let types = [
        LaunchRequest.type, StatusRequest.type, OutputRequest.type, CancelRequest.type, ContinueRequest.type, WaitRequest.type,
        LogsRequest.type, EventsRequest.type, ShutdownRequest.type, PingRequest.type, StatsRequest.type, RestartRequest.type,
        CleanRequest.type,
        MetricsRequest.type,
    ]

    /// Reads a request frame; the error names the request type and the wrong member.
    public static func decode(_ object: JSONObject) throws(RequestError) -> ControlRequest {
        guard let type = object["type"]?.stringValue else {
            throw RequestError("a request needs a string \"type\" (one of \(types.joined(separator: ", ")))")
        }
        var members = object
        members["type"] = nil
        do {
            if let request = try payload(type, members) { return request }
        } catch {
            throw RequestError("\(type): \(error.message)")
        }
        throw RequestError("unknown request type \"\(type)\" (known: \(types.joined(separator: ", ")))")
    }

    private static func payload(_ type: String, _ members: JSONObject) throws(FieldError) -> ControlRequest? {
        switch type {
        case LaunchRequest.type: .launch(try LaunchRequest(decoding: members))
        case StatusRequest.type: .status(try StatusRequest(decoding: members))
        case OutputRequest.type: .output(try OutputRequest(decoding: members))
        case CancelRequest.type: .cancel(try CancelRequest(decoding: members))
        case ContinueRequest.type: .continue(try ContinueRequest(decoding: members))
        case WaitRequest.type: .wait(try WaitRequest(decoding: members))
        case LogsRequest.type: .logs(try LogsRequest(decoding: members))
        case EventsRequest.type: .events(try EventsRequest(decoding: members))
        case ShutdownRequest.type: .shutdown(try ShutdownRequest(decoding: members))
        case PingRequest.type: .ping(try PingRequest(decoding: members))
        case StatsRequest.type: .stats(try StatsRequest(decoding: members))
        case RestartRequest.type: .restart(try RestartRequest(decoding: members))
        case ReloadRequest.type: .reload(try ReloadRequest(decoding: members))
        case CleanRequest.type: .clean(try CleanRequest(decoding: members))
        case MetricsRequest.type: .metrics(try MetricsRequest(decoding: members))
        default: nil
        }
    }

    /// The request frame's object.
    public var json: JSONObject {
        switch self {
        case .launch(let call): call.json()
        case .status(let call): call.json()
        case .output(let call): call.json()
        case .cancel(let call): call.json()
        case .continue(let call): call.json()
        case .restart(let call): call.json()
        case .wait(let call): call.json()
        case .logs(let call): call.json()
        case .events(let call): call.json()
        case .shutdown(let call): call.json()
        case .ping(let call): call.json()
        case .stats(let call): call.json()
        case .reload(let call): call.json()
        case .clean(let call): call.json()
        case .metrics(let call): call.json()
        }
    }
}

/// A request the daemon refuses unread: answered with code 2 and this message.
public struct RequestError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A request payload: its wire type, its strict reader and its writer, and the type of
/// the answer it gets (a frame enum for streams).
public protocol ControlCall: Sendable {
    associatedtype Reply: ControlReply
    static var type: String { get }
    /// Reads the members besides `type`, refusing unknown keys.
    init(decoding members: JSONObject) throws(FieldError)
    /// The members besides `type`.
    func members() -> JSONObject
}

extension ControlCall {
    /// The whole request frame's object.
    public func json() -> JSONObject {
        var object: JSONObject = ["type": .string(Self.type)]
        for (key, value) in members().members { object[key] = value }
        return object
    }
}

/// Which tasks a request is about: the named ones, or every task that has not ended.
public enum TaskSelection: Sendable, Equatable {
    case ids([String])
    case all

    static let keys = ["ids", "all"]

    init(_ fields: FieldReader) throws(FieldError) {
        let ids = try fields.strings("ids", of: "task ids")
        switch (ids, try fields.bool("all") ?? false) {
        case (nil, true): self = .all
        case (let ids?, false):
            guard !ids.isEmpty else { throw FieldError(field: "ids", "\"ids\" must name at least one task (or give \"all\": true)") }
            self = .ids(ids)
        case (.some, true): throw FieldError(field: "all", "give \"ids\" or \"all\": true, not both")
        case (nil, false): throw FieldError(field: "ids", "needs \"ids\" (an array of task ids) or \"all\": true")
        }
    }

    func write(into object: inout JSONObject) {
        switch self {
        case .ids(let ids): object["ids"] = .array(ids.map { .string($0) })
        case .all: object["all"] = true
        }
    }
}

// MARK: the requests

/// Queues a task: the fields of a manifest line, plus `session` (and `ttl_ms` as older
/// clients send it).
public struct LaunchRequest: ControlCall {
    public typealias Reply = LaunchReply
    public static let type = "launch"
    public var task: TaskRequest
    public var client = ClientContext()

    public init(task: TaskRequest, client: ClientContext = ClientContext()) {
        self.task = task
        self.client = client
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        client = try ClientContext(FieldReader(lenient: members))
        task = try TaskRequest.decode(ClientContext.strip(members), from: .launch)
        task.resume = task.sessionID != nil
    }

    public func members() -> JSONObject {
        var object = task.json()
        object["resume"] = nil  // a session implies it
        object["prompt"] = .string(task.prompt)
        if let description = task.description { object["description"] = .string(description) }
        if let session = task.sessionID { object["session"] = .string(session) }
        client.add(to: &object)
        return object
    }
}

/// Rows of every task, or the named tasks' task.json documents.
public struct StatusRequest: ControlCall {
    public typealias Reply = TasksReply
    public static let type = "status"
    public var ids: [String]
    /// Filters of the whole table (SPEC 15): any of these statuses, any of these agents,
    /// created within the last `sinceMs`, and the `limit` newest (newest first).
    public var statuses: [TaskStatus] = []
    public var agents: [String] = []
    public var sinceMs: Int?
    public var limit: Int?

    public init(ids: [String] = []) { self.ids = ids }

    public var filters: Bool { !statuses.isEmpty || !agents.isEmpty || sinceMs != nil || limit != nil }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["ids", "status", "agent", "since_ms", "limit"])
        ids = try fields.strings("ids", of: "task ids") ?? []
        for name in try fields.strings("status", of: "task statuses") ?? [] {
            guard let status = TaskStatus(rawValue: name) else {
                throw FieldError(field: "status", "\"status\" holds statuses (\(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))), found \"\(name)\"")
            }
            statuses.append(status)
        }
        agents = try fields.strings("agent", of: "agent names") ?? []
        sinceMs = try fields.milliseconds("since_ms")
        limit = try fields.count("limit")
        if !ids.isEmpty && filters { throw FieldError(field: "ids", "give task ids or filters, not both") }
    }

    public func members() -> JSONObject {
        var object = JSONObject()
        if !ids.isEmpty { object["ids"] = .array(ids.map { .string($0) }) }
        if !statuses.isEmpty { object["status"] = .array(statuses.map { .string($0.rawValue) }) }
        if !agents.isEmpty { object["agent"] = .array(agents.map { .string($0) }) }
        if let sinceMs { object["since_ms"] = .number(Double(sinceMs)) }
        if let limit { object["limit"] = .number(Double(limit)) }
        return object
    }
}

/// A task with its result; with `wait`, once it has ended (or `timeout_ms` passed).
public struct OutputRequest: ControlCall {
    public typealias Reply = OutputReply
    public static let type = "output"
    public var id: String
    public var wait: Bool
    public var timeoutMs: Int?

    public init(id: String, wait: Bool = false, timeoutMs: Int? = nil) {
        self.id = id
        self.wait = wait
        self.timeoutMs = timeoutMs
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["id", "wait", "timeout_ms"])
        id = try fields.required("id", fields.string)
        wait = try fields.bool("wait") ?? false
        timeoutMs = try fields.milliseconds("timeout_ms")
        if timeoutMs != nil && !wait { throw FieldError(field: "timeout_ms", "\"timeout_ms\" needs \"wait\": true") }
    }

    public func members() -> JSONObject {
        var object: JSONObject = ["id": .string(id)]
        if wait { object["wait"] = true }
        if let timeoutMs { object["timeout_ms"] = .number(Double(timeoutMs)) }
        return object
    }
}

/// Cancels tasks; answered once every one of them has ended.
public struct CancelRequest: ControlCall {
    public typealias Reply = CancelReply
    public static let type = "cancel"
    public var tasks: TaskSelection

    public init(_ tasks: TaskSelection) { self.tasks = tasks }

    public init(decoding members: JSONObject) throws(FieldError) {
        tasks = try TaskSelection(FieldReader(members, known: TaskSelection.keys))
    }

    public func members() -> JSONObject {
        var object = JSONObject()
        tasks.write(into: &object)
        return object
    }
}

/// A follow-up prompt for a session: to its running task, or as a new task.
public struct ContinueRequest: ControlCall {
    public typealias Reply = LaunchReply
    public static let type = "continue"
    public var session: String
    public var prompt: String
    public var description: String?
    public var client = ClientContext()

    public init(session: String, prompt: String, description: String? = nil, client: ClientContext = ClientContext()) {
        self.session = session
        self.prompt = prompt
        self.description = description
        self.client = client
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["session", "prompt", "description"] + ClientContext.keys)
        session = try fields.required("session", fields.string)
        prompt = try fields.required("prompt", fields.string)
        guard !TaskRequest.isBlank(prompt) else { throw FieldError(field: "prompt", "\"prompt\" must not be empty") }
        description = try fields.string("description")
        client = try ClientContext(fields)
    }

    public func members() -> JSONObject {
        var object: JSONObject = ["session": .string(session), "prompt": .string(prompt)]
        if let description { object["description"] = .string(description) }
        client.add(to: &object)
        return object
    }
}

/// A new task with the same request as an ended one (SPEC 13): a new id, the same session
/// unless `new_session`.
public struct RestartRequest: ControlCall {
    public typealias Reply = LaunchReply
    public static let type = "restart"
    public var id: String
    public var newSession: Bool
    public var client = ClientContext()

    public init(id: String, newSession: Bool = false, client: ClientContext = ClientContext()) {
        self.id = id
        self.newSession = newSession
        self.client = client
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["id", "new_session"] + ClientContext.keys)
        id = try fields.required("id", fields.string)
        newSession = try fields.bool("new_session") ?? false
        client = try ClientContext(fields)
    }

    public func members() -> JSONObject {
        var object: JSONObject = ["id": .string(id)]
        if newSession { object["new_session"] = true }
        client.add(to: &object)
        return object
    }
}

/// Progress frames until the tasks have ended (or `timeout_ms` passed).
public struct WaitRequest: ControlCall {
    public typealias Reply = WaitFrame
    public static let type = "wait"
    public var tasks: TaskSelection
    public var timeoutMs: Int?

    public init(_ tasks: TaskSelection, timeoutMs: Int? = nil) {
        self.tasks = tasks
        self.timeoutMs = timeoutMs
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: TaskSelection.keys + ["timeout_ms"])
        tasks = try TaskSelection(fields)
        timeoutMs = try fields.milliseconds("timeout_ms")
    }

    public func members() -> JSONObject {
        var object = JSONObject()
        tasks.write(into: &object)
        if let timeoutMs { object["timeout_ms"] = .number(Double(timeoutMs)) }
        return object
    }
}

/// A task's transcript lines; with `follow`, new ones until it ends.
public struct LogsRequest: ControlCall {
    public typealias Reply = LogsFrame
    public static let type = "logs"
    public var id: String
    public var follow: Bool

    public init(id: String, follow: Bool = false) {
        self.id = id
        self.follow = follow
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["id", "follow"])
        id = try fields.required("id", fields.string)
        follow = try fields.bool("follow") ?? false
    }

    public func members() -> JSONObject { ["id": .string(id), "follow": .bool(follow)] }
}

/// events.jsonl so far; with `follow`, each state change as it happens instead.
public struct EventsRequest: ControlCall {
    public typealias Reply = EventsFrame
    public static let type = "events"
    public var follow: Bool

    public init(follow: Bool = false) { self.follow = follow }

    public init(decoding members: JSONObject) throws(FieldError) {
        follow = try FieldReader(members, known: ["follow"]).bool("follow") ?? false
    }

    public func members() -> JSONObject { ["follow": .bool(follow)] }
}

public struct ShutdownRequest: ControlCall {
    public typealias Reply = ShutdownReply
    public static let type = "shutdown"
    public init() {}
    public init(decoding members: JSONObject) throws(FieldError) { _ = try FieldReader(members, known: []) }
    public func members() -> JSONObject { [:] }
}

public struct PingRequest: ControlCall {
    public typealias Reply = PingReply
    public static let type = "ping"
    public init() {}
    public init(decoding members: JSONObject) throws(FieldError) { _ = try FieldReader(members, known: []) }
    public func members() -> JSONObject { [:] }
}

public struct StatsRequest: ControlCall {
    public typealias Reply = StatsReply
    public static let type = "stats"
    public init() {}
    public init(decoding members: JSONObject) throws(FieldError) { _ = try FieldReader(members, known: []) }
    public func members() -> JSONObject { [:] }
}

/// Load a config: the file named (absolute), or with none the daemon's own file again.
/// Running tasks keep what they started with; a config that does not load is refused and
/// the old one kept.
public struct ReloadRequest: ControlCall {
    public typealias Reply = ReloadReply
    public static let type = "reload"
    public var config: String?

    public init(config: String? = nil) { self.config = config }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["config"])
        config = try fields.cString("config")
        if let config, !config.hasPrefix("/") { throw FieldError(field: "config", "\"config\" must be an absolute path, found \"\(config)\"") }
    }

    public func members() -> JSONObject { config.map { ["config": .string($0)] } ?? [:] }
}

/// Removes ended tasks' folders and forgets them (SPEC 15): the named ones, or every ended
/// task that matches the filters (ended more than `older_than_ms` ago, any of `status`).
/// Tasks that have not ended, and ended ones a task that has not ended depends on, are
/// skipped with the reason. `dry_run` only says what would go.
public struct CleanRequest: ControlCall {
    public typealias Reply = CleanReply
    public static let type = "clean"
    public var ids: [String] = []
    public var olderThanMs: Int?
    public var statuses: [TaskStatus] = []
    public var dryRun = false

    public init(ids: [String] = [], olderThanMs: Int? = nil, statuses: [TaskStatus] = [], dryRun: Bool = false) {
        self.ids = ids
        self.olderThanMs = olderThanMs
        self.statuses = statuses
        self.dryRun = dryRun
    }

    public init(decoding members: JSONObject) throws(FieldError) {
        let fields = try FieldReader(members, known: ["ids", "older_than_ms", "status", "dry_run"])
        ids = try fields.strings("ids", of: "task ids") ?? []
        olderThanMs = try fields.milliseconds("older_than_ms")
        for name in try fields.strings("status", of: "task statuses") ?? [] {
            guard let status = TaskStatus(rawValue: name), status.isTerminal else {
                throw FieldError(field: "status", "\"status\" holds ended statuses (completed, error, cancelled), found \"\(name)\"")
            }
            statuses.append(status)
        }
        dryRun = try fields.bool("dry_run") ?? false
    }

    public func members() -> JSONObject {
        var object = JSONObject()
        if !ids.isEmpty { object["ids"] = .array(ids.map { .string($0) }) }
        if let olderThanMs { object["older_than_ms"] = .number(Double(olderThanMs)) }
        if !statuses.isEmpty { object["status"] = .array(statuses.map { .string($0.rawValue) }) }
        if dryRun { object["dry_run"] = .bool(true) }
        return object
    }
}

/// The daemon's metrics in the Prometheus text format (README, "Metrics").
public struct MetricsRequest: ControlCall {
    public typealias Reply = MetricsReply
    public static let type = "metrics"
    public init() {}
    public init(decoding members: JSONObject) throws(FieldError) { _ = try FieldReader(members, known: []) }
    public func members() -> JSONObject { [:] }
}

import DroverWire
import Glibc

/// SPEC section 2: where a task is in its life.
public enum TaskStatus: String, Sendable, CaseIterable {
    case pending, running, completed, error, cancelled

    public var isTerminal: Bool { self == .completed || self == .error || self == .cancelled }
}

/// Why a task ended. Each belongs to exactly one terminal status.
public enum TaskReason: String, Sendable {
    // completed
    case result, idle, stable, exit
    // error
    case exitCode = "exit_code", signal, spawn, `protocol`, workerError = "worker_error", lost
    // cancelled
    case user, ttl, stale, queuedTtl = "queued_ttl", circuitBreaker = "circuit_breaker", shutdown, budget, dependency
    // pending again: an attempt ended and the next one waits
    case retry

    public var status: TaskStatus {
        switch self {
        case .result, .idle, .stable, .exit: .completed
        case .exitCode, .signal, .spawn, .protocol, .workerError, .lost: .error
        case .user, .ttl, .stale, .queuedTtl, .circuitBreaker, .shutdown, .budget, .dependency: .cancelled
        case .retry: .pending
        }
    }
}

/// Why a pending task has not started (SPEC section 2): so that "why does my task not
/// start?" always has an answer.
public enum WaitReason: String, Sendable, CaseIterable {
    /// Its pool (or the global cap) has no free slot.
    case slot
    /// Backing off before its next attempt.
    case retry
    /// Its pool is rate-limited.
    case cooldown
    case budget
    case dependency
    case cluster
}

/// How a task ends: decided once, by the first of result, error, timer, cancel or exit.
public struct Outcome: Sendable, Equatable {
    public var reason: TaskReason
    public var message: String?
    public var resultText: String?
    public var resultData: JSONValue?
    /// The worker said the failure may pass (an `error` frame with `retryable: true`).
    public var retryable = false

    public init(_ reason: TaskReason, message: String? = nil, resultText: String? = nil, resultData: JSONValue? = nil, retryable: Bool = false) {
        self.reason = reason
        self.message = message
        self.resultText = resultText
        self.resultData = resultData
        self.retryable = retryable
    }

    public var status: TaskStatus { reason.status }
}

/// What became of a follow-up prompt for a running session.
public enum PromptDelivery: Sendable, Equatable {
    case delivered
    /// The task is not running, its outcome is already decided, or it runs a raw program.
    case notRunning
    /// The worker has not read what it was sent before: more would pass maxBufferedBytes.
    case backlogFull(queuedBytes: Int, limit: Int)
}

/// Random ids: `bg_` or `ses_` plus 8 lowercase hex digits.
public enum TaskIdentifiers {
    public static func newTaskID() -> String { "bg_" + randomHex() }
    public static func newSessionID() -> String { "ses_" + randomHex() }

    public static func isTaskID(_ s: String) -> Bool { s.hasPrefix("bg_") && isHex8(s.dropFirst(3)) }
    public static func isSessionID(_ s: String) -> Bool { s.hasPrefix("ses_") && isHex8(s.dropFirst(4)) }

    private static func isHex8(_ s: Substring) -> Bool {
        s.count == 8 && s.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    private static func randomHex() -> String {
        let value = UInt32.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}

/// One finished attempt, as task.json's `attempts` keeps it.
public struct AttemptRecord: Sendable, Equatable {
    /// 1-based.
    public var number: Int
    public var provider: String?
    public var model: String?
    public var startedMs: Int64?
    public var endedMs: Int64
    public var status: TaskStatus
    public var reason: TaskReason
    public var error: String?
    /// What the attempt spent (its last usage frame's totals).
    public var usage: TaskUsage

    public init(number: Int, provider: String?, model: String?, startedMs: Int64?, endedMs: Int64, status: TaskStatus, reason: TaskReason, error: String?,
                usage: TaskUsage = TaskUsage()) {
        self.usage = usage
        self.number = number
        self.provider = provider
        self.model = model
        self.startedMs = startedMs
        self.endedMs = endedMs
        self.status = status
        self.reason = reason
        self.error = error
    }

    var json: JSONValue {
        [
            "n": .number(Double(number)), "provider": JSONValue(provider), "model": JSONValue(model),
            "started_at": startedMs.map { .string(Clock.rfc3339(ms: $0)) } ?? .null, "ended_at": .string(Clock.rfc3339(ms: endedMs)),
            "status": .string(status.rawValue), "reason": .string(reason.rawValue), "error": JSONValue(error),
            "usage": .object(usage.json),
        ]
    }

    init?(json value: JSONValue) {
        guard let object = value.objectValue, let number = object["n"]?.intValue,
              let ended = object["ended_at"]?.stringValue.flatMap(Clock.parseRFC3339),
              let status = object["status"]?.stringValue.flatMap(TaskStatus.init(rawValue:)),
              let reason = object["reason"]?.stringValue.flatMap(TaskReason.init(rawValue:))
        else { return nil }
        self.init(number: number, provider: object["provider"]?.stringValue, model: object["model"]?.stringValue,
                  startedMs: object["started_at"]?.stringValue.flatMap(Clock.parseRFC3339), endedMs: ended, status: status, reason: reason,
                  error: object["error"]?.stringValue, usage: TaskUsage(json: object["usage"]?.objectValue ?? [:]))
    }
}

/// The worker's activity, as task.json's `progress` shows it.
public struct TaskProgress: Sendable, Equatable {
    public var messages = 0
    public var toolCalls = 0
    public var lastTool: String?
    public var lastMessage: String?
    public var lastUpdateMs: Int64?
    public init() {}
}

/// Everything task.json records: a plain value, copied off the loop thread to be written.
public struct TaskSnapshot: Sendable {
    public var id: String
    public var sessionID: String
    public var agent: String
    public var provider: String?
    public var model: String?
    public var key: String
    public var description: String
    public var prompt: String
    public var status: TaskStatus = .pending
    /// Why a pending task waits; nil once it has left the queue.
    public var waitingFor: WaitReason?
    /// The attempt running or last run (1-based); 0 before the first start.
    public var attempt = 0
    /// Every finished attempt, oldest first.
    public var attempts: [AttemptRecord] = []
    /// What the task spent: the sum over its attempts (failed and cancelled ones included).
    public var usage = TaskUsage()
    public var reason: TaskReason?
    public var error: String?
    public var createdMs: Int64
    public var startedMs: Int64?
    public var endedMs: Int64?
    public var pid: Int32?
    public var exitCode: Int?
    public var signal: Int32?
    public var progress = TaskProgress()
    public var resultPath: String?
    public var ttlMs: Int
    public var pool: String
    public var slot: Int?
    /// Extra members a front end wants kept (the manifest line of `drover run`, say).
    public var extra = JSONObject()
    /// A worktree task's branch head once it ended (task.json's `worktree.head`).
    public var worktreeHead: String? { extra["worktree"]?.objectValue?["head"]?.stringValue }

    public var durationMs: Int64? {
        guard let startedMs else { return nil }
        return (endedMs ?? Clock.wallMs()) - startedMs
    }

    public func json() -> JSONObject {
        func time(_ ms: Int64?) -> JSONValue { ms.map { .string(Clock.rfc3339(ms: $0)) } ?? .null }
        var object: JSONObject = [
            "id": .string(id), "session_id": .string(sessionID), "agent": .string(agent),
            "provider": JSONValue(provider), "model": JSONValue(model), "key": .string(key),
            "description": .string(description), "prompt": .string(prompt),
            "status": .string(status.rawValue), "waiting_for": JSONValue(waitingFor?.rawValue), "attempt": .number(Double(attempt)),
            "reason": JSONValue(reason?.rawValue), "error": JSONValue(error),
            "created_at": time(createdMs), "started_at": time(startedMs), "ended_at": time(endedMs),
        ]
        object["duration_ms"] = endedMs != nil ? durationMs.map { .number(Double($0)) } ?? .null : .null
        object["pid"] = pid.map { .number(Double($0)) } ?? .null
        object["exit_code"] = exitCode.map { .number(Double($0)) } ?? .null
        object["signal"] = signal.map { .number(Double($0)) } ?? .null
        object["progress"] = [
            "messages": .number(Double(progress.messages)), "tool_calls": .number(Double(progress.toolCalls)),
            "last_tool": JSONValue(progress.lastTool), "last_message": JSONValue(progress.lastMessage),
            "last_update": time(progress.lastUpdateMs),
        ]
        object["attempts"] = .array(attempts.map(\.json))
        object["usage"] = .object(usage.json)
        object["result_path"] = JSONValue(resultPath)
        object["ttl_ms"] = .number(Double(ttlMs))
        object["pool"] = .string(pool)
        object["slot"] = slot.map { .number(Double($0)) } ?? .null
        for (key, value) in extra.members { object[key] = value }
        return object
    }

    static let knownKeys: Set<String> = [
        "id", "session_id", "agent", "provider", "model", "key", "description", "prompt", "status", "waiting_for", "attempt", "reason", "error",
        "created_at", "started_at", "ended_at", "duration_ms", "pid", "exit_code", "signal", "progress", "attempts", "usage", "result_path",
        "ttl_ms", "pool", "slot",
    ]

    /// Reads a task.json back (resume, and a daemon's recovery): the inverse of `json()`.
    public init?(json object: JSONObject) {
        guard let id = object["id"]?.stringValue, let sessionID = object["session_id"]?.stringValue,
            let agent = object["agent"]?.stringValue, let status = object["status"]?.stringValue.flatMap(TaskStatus.init)
        else { return nil }
        func time(_ key: String) -> Int64? { object[key]?.stringValue.flatMap(Clock.parseRFC3339) }
        self.id = id
        self.sessionID = sessionID
        self.agent = agent
        provider = object["provider"]?.stringValue
        model = object["model"]?.stringValue
        key = object["key"]?.stringValue ?? agent
        description = object["description"]?.stringValue ?? ""
        prompt = object["prompt"]?.stringValue ?? ""
        self.status = status
        waitingFor = object["waiting_for"]?.stringValue.flatMap(WaitReason.init)
        attempt = object["attempt"]?.intValue ?? 0
        attempts = object["attempts"]?.arrayValue?.compactMap(AttemptRecord.init(json:)) ?? []
        usage = TaskUsage(json: object["usage"]?.objectValue ?? [:])
        reason = object["reason"]?.stringValue.flatMap(TaskReason.init)
        error = object["error"]?.stringValue
        createdMs = time("created_at") ?? 0
        startedMs = time("started_at")
        endedMs = time("ended_at")
        pid = object["pid"]?.intValue.map { Int32($0) }
        exitCode = object["exit_code"]?.intValue
        signal = object["signal"]?.intValue.map { Int32($0) }
        if let p = object["progress"]?.objectValue {
            progress.messages = p["messages"]?.intValue ?? 0
            progress.toolCalls = p["tool_calls"]?.intValue ?? 0
            progress.lastTool = p["last_tool"]?.stringValue
            progress.lastMessage = p["last_message"]?.stringValue
            progress.lastUpdateMs = p["last_update"]?.stringValue.flatMap(Clock.parseRFC3339)
        }
        resultPath = object["result_path"]?.stringValue
        ttlMs = object["ttl_ms"]?.intValue ?? 0
        pool = object["pool"]?.stringValue ?? key
        slot = object["slot"]?.intValue
        for (name, value) in object.members where !Self.knownKeys.contains(name) { extra[name] = value }
    }

    public init(id: String, sessionID: String, agent: String, provider: String?, model: String?, key: String,
                description: String, prompt: String, createdMs: Int64, ttlMs: Int, pool: String)
    {
        self.id = id
        self.sessionID = sessionID
        self.agent = agent
        self.provider = provider
        self.model = model
        self.key = key
        self.description = description
        self.prompt = prompt
        self.createdMs = createdMs
        self.ttlMs = ttlMs
        self.pool = pool
    }
}

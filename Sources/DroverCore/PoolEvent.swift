import DroverWire

/// A line of events.jsonl about a pool rather than a task: a cooldown begins (or is made
/// longer) or ends. It has `pool` where a task's line has `task_id`.
public struct PoolEvent: Sendable, Equatable {
    public enum Status: String, Sendable {
        case cooldown
        case cooldownEnd = "cooldown_end"
    }

    public var atMs: Int64
    public var pool: String
    public var status: Status
    /// When the cooldown ends (unix ms).
    public var untilMs: Int64?
    public var retryAfterMs: Int?
    public var limit: Int?
    public var effectiveLimit: Int?
    /// The task whose worker was refused.
    public var taskID: String?

    public init(atMs: Int64, pool: String, status: Status, untilMs: Int64? = nil, retryAfterMs: Int? = nil, limit: Int? = nil,
                effectiveLimit: Int? = nil, taskID: String? = nil)
    {
        self.atMs = atMs
        self.pool = pool
        self.status = status
        self.untilMs = untilMs
        self.retryAfterMs = retryAfterMs
        self.limit = limit
        self.effectiveLimit = effectiveLimit
        self.taskID = taskID
    }

    public var json: JSONObject {
        var object: JSONObject = ["t": .number(Double(atMs)), "pool": .string(pool), "status": .string(status.rawValue)]
        if let untilMs { object["until"] = .string(Clock.rfc3339(ms: untilMs)) }
        if let retryAfterMs { object["retry_after_ms"] = .number(Double(retryAfterMs)) }
        if let limit { object["limit"] = .number(Double(limit)) }
        if let effectiveLimit { object["effective_limit"] = .number(Double(effectiveLimit)) }
        if let taskID { object["caused_by"] = .string(taskID) }
        return object
    }

    public init?(json object: JSONObject) {
        guard object["task_id"] == nil, let pool = object["pool"]?.stringValue,
              let status = object["status"]?.stringValue.flatMap(Status.init(rawValue:))
        else { return nil }
        self.init(atMs: Int64(object["t"]?.intValue ?? 0), pool: pool, status: status,
                  untilMs: object["until"]?.stringValue.flatMap(Clock.parseRFC3339), retryAfterMs: object["retry_after_ms"]?.intValue,
                  limit: object["limit"]?.intValue, effectiveLimit: object["effective_limit"]?.intValue,
                  taskID: object["caused_by"]?.stringValue)
    }

    var line: [UInt8] {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(json, into: &bytes)
        bytes.append(0x0A)
        return bytes
    }
}

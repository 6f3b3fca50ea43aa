import DroverWire

/// A line of events.jsonl: one state change of one task. The file is also drover's journal:
/// a task's `running` line is durable before its worker starts, and its end is written only
/// after its task.json and result.md, so a restart learns from it what may have run.
public struct TaskEvent: Sendable, Equatable {
    public var atMs: Int64
    public var taskID: String
    public var sessionID: String
    public var status: TaskStatus
    public var reason: TaskReason?
    /// The attempt starting (`running`) or about to start (`pending` with reason `retry`).
    public var attempt: Int?
    /// Members a front end adds to a task's first line (a batch row's identity, say).
    public var tags: JSONObject

    public init(atMs: Int64, taskID: String, sessionID: String, status: TaskStatus, reason: TaskReason?, attempt: Int? = nil, tags: JSONObject = [:]) {
        self.atMs = atMs
        self.taskID = taskID
        self.sessionID = sessionID
        self.status = status
        self.reason = reason
        self.attempt = attempt
        self.tags = tags
    }

    public init(_ snapshot: TaskSnapshot, atMs: Int64, tags: JSONObject = [:]) {
        // A running line names the attempt that starts; a retry's pending line the one to come.
        let attempt: Int? = switch (snapshot.status, snapshot.reason) {
        case (.running, _) where snapshot.attempt > 0: snapshot.attempt
        case (.pending, .retry?): snapshot.attempt + 1
        default: nil
        }
        self.init(atMs: atMs, taskID: snapshot.id, sessionID: snapshot.sessionID, status: snapshot.status, reason: snapshot.reason,
                  attempt: attempt, tags: tags)
    }

    public var json: JSONObject {
        var object: JSONObject = [
            "t": .number(Double(atMs)), "task_id": .string(taskID), "session_id": .string(sessionID),
            "status": .string(status.rawValue), "reason": JSONValue(reason?.rawValue),
        ]
        if let attempt { object["attempt"] = .number(Double(attempt)) }
        for (key, value) in tags.members where object[key] == nil { object[key] = value }
        return object
    }

    /// The line as written: compact JSON and a newline.
    public var line: [UInt8] {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(json, into: &bytes)
        bytes.append(0x0A)
        return bytes
    }

    static let ownKeys: Set<String> = ["t", "task_id", "session_id", "status", "reason", "attempt"]

    public init?(json object: JSONObject) {
        guard let taskID = object["task_id"]?.stringValue, let sessionID = object["session_id"]?.stringValue,
              let status = object["status"]?.stringValue.flatMap(TaskStatus.init(rawValue:))
        else { return nil }
        self.init(atMs: Int64(object["t"]?.intValue ?? 0), taskID: taskID, sessionID: sessionID, status: status,
                  reason: object["reason"]?.stringValue.flatMap(TaskReason.init(rawValue:)), attempt: object["attempt"]?.intValue)
        for (key, value) in object.members where !Self.ownKeys.contains(key) { tags[key] = value }
    }
}

/// A frame from the supervisor to a worker (SPEC section 5), encoded in one place.
public enum SupervisorFrame: Sendable, Equatable {
    case start(StartFrame)
    /// A follow-up prompt to a live session.
    case prompt(text: String)
    case cancel(reason: String)

    public var object: JSONObject {
        switch self {
        case .start(let start): return start.object
        case .prompt(let text): return ["type": "prompt", "text": .string(text)]
        case .cancel(let reason): return ["type": "cancel", "reason": .string(reason)]
        }
    }
}

/// What a worker is told when its attempt starts.
public struct StartFrame: Sendable, Equatable {
    public var taskID: String
    public var sessionID: String
    public var agent: String
    public var provider: String?
    public var model: String?
    public var description: String
    public var prompt: String
    public var resume: Bool
    /// The session's earlier frames (JSON lines), when resuming.
    public var transcriptPath: String?
    public var workdir: String
    /// Unix milliseconds by which the attempt must end (its ttl), if it has one.
    public var deadlineMs: Int64?
    /// 1-based.
    public var attempt: Int

    public init(taskID: String, sessionID: String, agent: String, provider: String?, model: String?, description: String, prompt: String,
                resume: Bool, transcriptPath: String?, workdir: String, deadlineMs: Int64?, attempt: Int)
    {
        self.taskID = taskID
        self.sessionID = sessionID
        self.agent = agent
        self.provider = provider
        self.model = model
        self.description = description
        self.prompt = prompt
        self.resume = resume
        self.transcriptPath = transcriptPath
        self.workdir = workdir
        self.deadlineMs = deadlineMs
        self.attempt = attempt
    }

    public var object: JSONObject {
        var object: JSONObject = [
            "type": "start", "protocol": 1, "task_id": .string(taskID), "session_id": .string(sessionID),
            "agent": .string(agent), "provider": JSONValue(provider), "model": JSONValue(model),
            "description": .string(description), "prompt": .string(prompt), "resume": .bool(resume),
        ]
        if let transcriptPath { object["transcript_path"] = .string(transcriptPath) }
        object["workdir"] = .string(workdir)
        object["deadline_ms"] = deadlineMs.map { .number(Double($0)) } ?? .null
        object["attempt"] = .number(Double(attempt))
        return object
    }
}

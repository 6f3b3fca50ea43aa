import DroverWire

/// What a caller asks drover to run: an agent and a prompt, or a raw argv command.
public struct TaskRequest: Sendable {
    public var agent: String?
    /// argv of a raw command task (the implicit agent `command`, provider `local`).
    public var command: [String]?
    public var prompt: String
    public var description: String?
    public var provider: String?
    public var model: String?
    public var cwd: String?
    public var env: [String: String] = [:]
    /// Per-task timer overrides (a manifest's `ttl` sets `taskTtl`).
    public var timers = TimerSettings()
    /// Continue this session instead of starting a new one.
    public var sessionID: String?
    public var resume = false
    /// Members copied into task.json as they are (front ends' bookkeeping).
    public var extra = JSONObject()

    public init(agent: String, prompt: String, description: String? = nil) {
        self.agent = agent
        self.prompt = prompt
        self.description = description
    }

    public init(command: [String], prompt: String = "", description: String? = nil) {
        self.command = command
        self.prompt = prompt
        self.description = description
    }
}

/// Why a request was refused before it became a task.
public enum SubmitError: Error, Sendable, CustomStringConvertible {
    case unknownAgent(String, known: [String])
    case emptyCommand

    public var description: String {
        switch self {
        case .unknownAgent(let name, let known):
            return "unknown agent \"\(name)\" (known: \(known.joined(separator: ", ")))"
        case .emptyCommand: return "a command task needs a non-empty argv array"
        }
    }
}

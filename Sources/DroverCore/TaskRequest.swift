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
    /// Per-task circuit-breaker overrides.
    public var breaker = BreakerSettings()
    /// Per-task resource limits, over the agent's.
    public var limits = ResourceLimits()
    /// Run in a fresh private folder under the task's folder (nil: as the agent says).
    public var workdirPerTask: Bool?
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

extension TaskRequest {
    /// What task.json keeps of the request, so a daemon can queue a pending task again
    /// after a restart.
    public func json() -> JSONObject {
        var object = JSONObject()
        if let agent { object["agent"] = .string(agent) }
        if let command { object["command"] = .array(command.map { .string($0) }) }
        if let cwd { object["cwd"] = .string(cwd) }
        if !env.isEmpty {
            var variables = JSONObject()
            for (name, value) in env.sorted(by: { $0.key < $1.key }) { variables[name] = .string(value) }
            object["env"] = .object(variables)
        }
        let timers = self.timers.json()
        if !timers.isEmpty { object["timers"] = .object(timers) }
        if resume { object["resume"] = true }
        if let workdirPerTask { object["workdir_per_task"] = .bool(workdirPerTask) }
        var limits = JSONObject()
        if let n = breaker.maxToolCalls { limits["maxToolCalls"] = .number(Double(n)) }
        if let n = breaker.maxRepeatedToolCalls { limits["maxRepeatedToolCalls"] = .number(Double(n)) }
        if let n = breaker.maxTranscriptBytes { limits["maxTranscriptBytes"] = .number(Double(n)) }
        if !limits.isEmpty { object["breaker"] = .object(limits) }
        if !self.limits.isEmpty {
            var resources = JSONObject()
            for (name, value) in [("cpuSeconds", self.limits.cpuSeconds), ("memory", self.limits.memory), ("openFiles", self.limits.openFiles),
                                  ("processes", self.limits.processes), ("fileSize", self.limits.fileSize)] {
                if let value { resources[name] = .number(Double(value)) }
            }
            object["limits"] = .object(resources)
        }
        return object
    }

    /// The request back from task.json (with the prompt and ids from its snapshot).
    public init?(json object: JSONObject, snapshot: TaskSnapshot) {
        if let argv = object["command"]?.arrayValue {
            self.init(command: argv.compactMap(\.stringValue), prompt: snapshot.prompt, description: snapshot.description)
        } else if let agent = object["agent"]?.stringValue {
            self.init(agent: agent, prompt: snapshot.prompt, description: snapshot.description)
        } else {
            return nil
        }
        provider = snapshot.provider
        model = snapshot.model
        cwd = object["cwd"]?.stringValue
        for (name, value) in object["env"]?.objectValue?.members ?? JSONObject().members {
            if let value = value.stringValue { env[name] = value }
        }
        timers = TimerSettings(json: object["timers"]?.objectValue ?? JSONObject())
        sessionID = snapshot.sessionID
        resume = object["resume"]?.boolValue ?? false
        workdirPerTask = object["workdir_per_task"]?.boolValue
        let limits = object["breaker"]?.objectValue ?? JSONObject()
        breaker.maxToolCalls = limits["maxToolCalls"]?.intValue
        breaker.maxRepeatedToolCalls = limits["maxRepeatedToolCalls"]?.intValue
        breaker.maxTranscriptBytes = limits["maxTranscriptBytes"]?.intValue
        let resources = object["limits"]?.objectValue ?? JSONObject()
        self.limits.cpuSeconds = resources["cpuSeconds"]?.intValue
        self.limits.memory = resources["memory"]?.intValue
        self.limits.openFiles = resources["openFiles"]?.intValue
        self.limits.processes = resources["processes"]?.intValue
        self.limits.fileSize = resources["fileSize"]?.intValue
    }
}

extension TimerSettings {
    func json() -> JSONObject {
        var object = JSONObject()
        for (name, path) in Self.durationKeys {
            if let ms = self[keyPath: path] { object[name] = .number(Double(ms)) }
        }
        if let stablePolls { object["stablePolls"] = .number(Double(stablePolls)) }
        return object
    }

    init(json object: JSONObject) {
        self.init()
        for (name, path) in Self.durationKeys { self[keyPath: path] = object[name]?.intValue }
        stablePolls = object["stablePolls"]?.intValue
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

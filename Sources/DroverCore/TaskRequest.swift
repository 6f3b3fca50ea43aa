import DroverWire

/// What a caller asks drover to run: an agent and a prompt, or a raw argv command.
public struct TaskRequest: Sendable, Equatable {
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
    /// Per-task retry overrides.
    public var retry = RetrySettings()
    /// Per-task caps on money and tokens.
    public var spendLimits = SpendLimits()
    /// Per-task resource limits, over the agent's.
    public var limits = ResourceLimits()
    /// Run in a private folder or a git worktree (nil: as the agent says).
    public var workdir: WorkdirMode?
    /// A worktree task's settings, over the agent's.
    public var worktree = WorktreeSettings()
    /// Run the worker under bubblewrap (its members over the agent's sandbox, if any).
    public var sandbox: SandboxSettings?
    /// Tasks (ids) that must complete before this one starts (SPEC 13); a manifest's row
    /// names are turned into ids before the row is submitted.
    public var after: [String] = []
    /// Within its pool a higher priority starts first; equal priorities stay FIFO.
    public var priority = 0
    /// Continue this session instead of starting a new one.
    public var sessionID: String?
    public var resume = false
    /// Members copied into task.json as they are (front ends' bookkeeping).
    public var extra = JSONObject()
    /// Values the launching client had for passEnv names; they win over the supervisor's
    /// and are never written anywhere (not part of `json()`).
    public var clientEnvironment: [String: String] = [:]

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
    /// What task.json keeps of the request, so a daemon can queue a pending task again after
    /// a restart: the keys `decode(_:from: .taskFile)` reads, with the prompt, description
    /// and session left to task.json's own members.
    public func json() -> JSONObject {
        var object = JSONObject()
        if let agent { object["agent"] = .string(agent) }
        if let command { object["command"] = .array(command.map { .string($0) }) }
        if let provider { object["provider"] = .string(provider) }
        if let model { object["model"] = .string(model) }
        if let cwd { object["cwd"] = .string(cwd) }
        if !env.isEmpty {
            var variables = JSONObject()
            for (name, value) in env.sorted(by: { $0.key < $1.key }) { variables[name] = .string(value) }
            object["env"] = .object(variables)
        }
        if let workdir { object["workdir"] = .string(workdir.rawValue) }
        if let repo = worktree.repo { object["repo"] = .string(repo) }
        if let base = worktree.base { object["base"] = .string(base) }
        if let commit = worktree.commit { object["commit"] = .bool(commit) }
        if let keep = worktree.keepWorktree { object["keepWorktree"] = .bool(keep) }
        if let sandbox {
            var members = JSONObject()
            if let filesystem = sandbox.filesystem { members["filesystem"] = .string(filesystem.rawValue) }
            if let network = sandbox.network { members["network"] = .string(network.rawValue) }
            if let writable = sandbox.writable { members["writable"] = .array(writable.map { .string($0) }) }
            if let hide = sandbox.hide { members["hide"] = .array(hide.map { .string($0) }) }
            object["sandbox"] = .object(members)
        }
        if !limits.isEmpty {
            var resources = JSONObject()
            for (name, value) in [("cpuSeconds", limits.cpuSeconds), ("memory", limits.memory), ("openFiles", limits.openFiles),
                                  ("processes", limits.processes), ("fileSize", limits.fileSize)] {
                if let value { resources[name] = .number(Double(value)) }
            }
            object["limits"] = .object(resources)
        }
        for (name, value) in timers.json().members { object[name] = value }
        for (name, value) in retry.json().members { object[name] = value }
        for (name, value) in spendLimits.json().members { object[name] = value }
        for (name, value) in [("maxToolCalls", breaker.maxToolCalls), ("maxRepeatedToolCalls", breaker.maxRepeatedToolCalls),
                              ("maxTranscriptBytes", breaker.maxTranscriptBytes)] {
            if let value { object[name] = .number(Double(value)) }
        }
        if !after.isEmpty { object["after"] = .array(after.map { .string($0) }) }
        if priority != 0 { object["priority"] = .number(Double(priority)) }
        if resume { object["resume"] = true }
        return object
    }

    /// The request back from task.json, with the prompt, description and ids from its snapshot.
    public init?(json object: JSONObject, snapshot: TaskSnapshot) {
        guard let request = try? Self.stored(object, snapshot: snapshot) else { return nil }
        self = request
    }

    /// The same, saying what is wrong with a request that cannot be read.
    public static func stored(_ object: JSONObject, snapshot: TaskSnapshot) throws(FieldError) -> TaskRequest {
        var request = try decode(upgradingStoredForm(object), from: .taskFile)
        request.prompt = snapshot.prompt
        request.description = snapshot.description
        request.provider = request.provider ?? snapshot.provider
        request.model = request.model ?? snapshot.model
        request.sessionID = snapshot.sessionID
        return request
    }

    /// task.json files written before the stored form was the decoder's: timers and breaker
    /// rules were nested, and a private folder was `workdir_per_task`. Pending tasks of
    /// such a folder still queue again.
    static func upgradingStoredForm(_ object: JSONObject) -> JSONObject {
        var upgraded = object
        for nested in ["timers", "breaker"] {
            guard let members = object[nested]?.objectValue else { continue }
            upgraded[nested] = nil
            for (name, value) in members.members { upgraded[name] = value }
        }
        if let perTask = object["workdir_per_task"] {
            upgraded["workdir_per_task"] = nil
            if perTask.boolValue == true { upgraded["workdir"] = "task" }
        }
        return upgraded
    }
}

extension TimerSettings {
    /// The timers that are set, by their config names (durations in milliseconds).
    func json() -> JSONObject {
        var object = JSONObject()
        for (name, path) in Self.durationKeys {
            if let ms = self[keyPath: path] { object[name] = .number(Double(ms)) }
        }
        if let stablePolls { object["stablePolls"] = .number(Double(stablePolls)) }
        return object
    }
}

/// Why a request was refused before it became a task.
public enum SubmitError: Error, Sendable, CustomStringConvertible {
    case unknownAgent(String, known: [String])
    case emptyCommand
    /// `after` names a task this supervisor does not know.
    case unknownDependency(String)
    /// The prompt's `{result:ID}` names a task that is not in `after`.
    case resultOfNonDependency(String)
    /// `base: "@ID"` names a task that is not in `after`.
    case baseOfNonDependency(String)

    public var description: String {
        switch self {
        case .unknownAgent(let name, let known):
            return "unknown agent \"\(name)\" (known: \(known.joined(separator: ", ")))"
        case .emptyCommand: return "a command task needs a non-empty argv array"
        case .unknownDependency(let id): return "after: no task \(id) (a task can only wait for a task drover knows)"
        case .resultOfNonDependency(let id):
            return "the prompt's {result:\(id)} names a task that is not in \"after\": a result is known only once the task it waits for has completed"
        case .baseOfNonDependency(let id):
            return "base @\(id) names a task that is not in \"after\": its branch is known only once it has completed"
        }
    }
}

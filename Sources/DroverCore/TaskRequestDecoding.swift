import DroverWire

/// Where a task request's JSON object comes from; each source allows a few keys of its own.
public enum TaskRequestSource: Sendable {
    /// A line of a `drover run` manifest.
    case manifestLine
    /// A control `launch` request: also `session`, and `ttl_ms` as older clients send it.
    case launch
    /// The `request` member of task.json: also `resume`; the prompt is task.json's own.
    case taskFile
}

/// One strict reader of a task request, for manifest lines, launch requests and task.json.
/// Keys: `agent` or `command`, `prompt`, `description`, `provider`, `model`, `cwd`, `env`,
/// `workdir`, `limits`, `ttl`, and every per-task timer and breaker rule by its config name.
extension TaskRequest {
    static let timerKeys = TimerSettings.durationKeys.map(\.0) + ["stablePolls"]
    static let breakerKeys = ["maxToolCalls", "maxRepeatedToolCalls", "maxTranscriptBytes"]
    static let commonKeys = ["agent", "command", "prompt", "description", "provider", "model", "cwd", "env", "workdir", "limits", "ttl",
                             "after", "priority", "sandbox"] + WorktreeSettings.keys
        + timerKeys + breakerKeys + ConfigReader.retryKeys + SpendLimits.keys
    /// Priorities beyond this either way are refused: a typo, not a plan.
    public static let priorityRange = -1_000_000...1_000_000

    /// A prompt of nothing but white space (an agent needs instructions; a raw command's
    /// prompt is only its stdin and may be empty).
    public static func isBlank(_ prompt: String) -> Bool {
        prompt.unicodeScalars.allSatisfy { $0.properties.isWhitespace }
    }

    public static func keys(for source: TaskRequestSource) -> [String] {
        switch source {
        case .manifestLine: commonKeys + ["name"]
        case .launch: commonKeys + ["session", "ttl_ms"]
        case .taskFile: commonKeys + ["resume"]
        }
    }

    /// Reads a request, checking every member. `agents`, when given, are the names an
    /// `agent` may have.
    public static func decode(_ object: JSONObject, from source: TaskRequestSource, agents: [String]? = nil) throws(FieldError) -> TaskRequest {
        let fields = try FieldReader(object, known: keys(for: source))
        let prompt = try fields.string("prompt")
        var request: TaskRequest
        if fields.has("command") {
            guard !fields.has("agent") else { throw FieldError(field: "agent", "give either \"agent\" or \"command\", not both") }
            request = TaskRequest(command: try argv(fields), prompt: prompt ?? "")
        } else {
            guard let agent = try fields.cString("agent") else { throw FieldError(field: "agent", "needs \"agent\" (with \"prompt\") or \"command\"") }
            if let agents, !agents.contains(agent) {
                throw FieldError(field: "agent", "unknown agent \"\(agent)\" (known: \(agents.sorted().joined(separator: ", ")))")
            }
            guard prompt != nil || source == .taskFile else { throw FieldError(field: "prompt", "needs \"prompt\" for agent \"\(agent)\"") }
            // An agent given nothing to do would only guess; a task file is read as it was written.
            if let prompt, source != .taskFile, isBlank(prompt) {
                throw FieldError(field: "prompt", "\"prompt\" for agent \"\(agent)\" is empty: give the agent its instructions")
            }
            request = TaskRequest(agent: agent, prompt: prompt ?? "")
        }
        request.description = try fields.string("description")
        request.provider = try fields.cString("provider")
        request.model = try fields.cString("model")
        request.cwd = try fields.cString("cwd")
        if request.cwd == "" { throw FieldError(field: "cwd", "\"cwd\" must be a folder, found \"\"") }
        request.env = try environment(fields)
        if let workdir = try fields.string("workdir") {
            guard let mode = WorkdirMode(rawValue: workdir) else {
                throw FieldError(field: "workdir", "\"workdir\" is \"task\" (a fresh folder under the task's folder) or \"worktree\" (a git worktree on the branch drover/<task_id>), found \(FieldReader.describe(.string(workdir))); use \"cwd\" for a folder")
            }
            request.workdir = mode
        }
        request.worktree = WorktreeSettings(repo: try fields.cString("repo"), base: try fields.cString("base"),
                                            commit: try fields.bool("commit"), keepWorktree: try fields.bool("keepWorktree"))
        if request.worktree.repo == "" { throw FieldError(field: "repo", "\"repo\" must be a folder, found \"\"") }
        if let sandbox = fields.value("sandbox") { request.sandbox = try SandboxSettings.read(sandbox, "sandbox") }
        if let base = request.worktree.base {
            try checkBase(base, source: source)
        }
        try readSettings(fields, into: &request)
        request.after = try dependencies(fields, source: source)
        // A branch to start from is known once its task has completed: it is waited for.
        if let dependency = request.worktree.baseTask, !request.after.contains(dependency) { request.after.append(dependency) }
        if let priority = fields.value("priority") {
            guard case .number(let number) = priority, number.rounded() == number, priorityRange.contains(Int(exactly: number) ?? Int.max) else {
                throw FieldError(field: "priority", "\"priority\" must be a whole number from \(priorityRange.lowerBound) to \(priorityRange.upperBound), found \(FieldReader.describe(priority))")
            }
            request.priority = Int(number)
        }
        switch source {
        case .launch: request.sessionID = try fields.cString("session")
        case .taskFile: request.resume = try fields.bool("resume") ?? false
        case .manifestLine: break
        }
        return request
    }

    /// A base is a commit-ish (not an option git would take), or `@` and a dependency: a row
    /// name in a manifest, a task id elsewhere.
    private static func checkBase(_ base: String, source: TaskRequestSource) throws(FieldError) {
        guard !base.isEmpty, !base.hasPrefix("-") else {
            throw FieldError(field: "base", "\"base\" must be a commit, branch or tag of the repository, or @NAME, found \(FieldReader.describe(.string(base)))")
        }
        guard base.hasPrefix("@") else { return }
        let name = String(base.dropFirst())
        if source == .manifestLine {
            guard ManifestNames.isName(name) else { throw FieldError(field: "base", ManifestNames.rule(found: name)) }
        } else {
            guard TaskIdentifiers.isTaskID(name) else {
                throw FieldError(field: "base", "\"base\" @... must name a task id (@bg_...), found \(FieldReader.describe(.string(base)))")
            }
        }
    }

    /// `after`: task ids, or in a manifest the names of other rows; each once.
    private static func dependencies(_ fields: FieldReader, source: TaskRequestSource) throws(FieldError) -> [String] {
        let what = source == .manifestLine ? "row names" : "task ids (bg_...)"
        let names = try fields.strings("after", of: what) ?? []
        var seen: Set<String> = []
        for name in names {
            guard seen.insert(name).inserted else { throw FieldError(field: "after", "\"after\" names \(name) twice") }
            if source == .manifestLine {
                guard ManifestNames.isName(name) else { throw FieldError(field: "after", ManifestNames.rule(found: name)) }
            } else {
                guard TaskIdentifiers.isTaskID(name) else { throw FieldError(field: "after", "\"after\" must hold task ids (bg_...), found \(FieldReader.describe(.string(name)))") }
            }
        }
        return names
    }

    private static func argv(_ fields: FieldReader) throws(FieldError) -> [String] {
        let argv = try fields.strings("command", of: "strings (an argv)") ?? []
        guard let program = argv.first else { throw FieldError(field: "command", "\"command\" must be a non-empty array of strings (an argv)") }
        for (index, argument) in argv.enumerated() where argument.utf8.contains(0) {
            throw FieldError(field: "command[\(index)]", "\"command[\(index)]\" must not contain a NUL byte")
        }
        guard !program.isEmpty else { throw FieldError(field: "command[0]", "\"command[0]\" (the program) must not be empty") }
        return argv
    }

    /// Names that a child's environment can hold as NAME=value; values without NUL.
    private static func environment(_ fields: FieldReader) throws(FieldError) -> [String: String] {
        guard let variables = try fields.object("env") else { return [:] }
        var env: [String: String] = [:]
        for (name, value) in variables.members {
            let path = "env.\(name)"
            guard !name.isEmpty, !name.contains("="), !name.utf8.contains(0) else {
                throw FieldError(field: path, "\"env\" names must be non-empty, without \"=\" or NUL, found \(FieldReader.describe(.string(name)))")
            }
            guard case .string(let text) = value else { throw FieldError(field: path, "\"\(path)\" must be a string, found \(value.typeName)") }
            guard !text.utf8.contains(0) else { throw FieldError(field: path, "\"\(path)\" must not contain a NUL byte") }
            env[name] = text
        }
        return env
    }

    /// Limits, timers and breaker rules, through the config's own checks.
    private static func readSettings(_ fields: FieldReader, into request: inout TaskRequest) throws(FieldError) {
        let reader = ConfigReader(file: "", lines: [:], lenient: false)
        do {
            if let limits = fields.value("limits") { request.limits = try reader.readLimits(limits, "limits") }
            for key in timerKeys {
                if let value = fields.value(key) { _ = try reader.readTimer(key, value, key, into: &request.timers) }
            }
            for key in breakerKeys {
                if let value = fields.value(key) { _ = try reader.readBreaker(key, value, key, into: &request.breaker) }
            }
            for key in ConfigReader.retryKeys {
                if let value = fields.value(key) { _ = try reader.readRetry(key, value, key, into: &request.retry) }
            }
            for key in SpendLimits.keys {
                if let value = fields.value(key) { _ = try reader.readSpendLimit(key, value, key, into: &request.spendLimits) }
            }
            if let ttl = fields.value("ttl") { request.timers.taskTtl = try reader.duration(ttl, "ttl") }
        } catch {
            throw FieldError(error)
        }
        if let ms = try fields.milliseconds("ttl_ms") { request.timers.taskTtl = ms }
        // One setting under three names: saying it twice is a mistake, whichever wins.
        let ttlNames = ["ttl", "ttl_ms", "taskTtl"].filter(fields.has)
        if ttlNames.count > 1 {
            throw FieldError(field: ttlNames[1], "give one of \(ttlNames.map { "\"\($0)\"" }.joined(separator: " and ")): they are the same setting")
        }
    }
}

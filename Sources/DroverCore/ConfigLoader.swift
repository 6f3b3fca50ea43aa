import DroverWire

/// A config that cannot be used: which file, line and key, and what is wrong.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let keyPath: String?
    public let message: String

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let keyPath { text += ": \(keyPath)" }
        return text + ": " + message
    }
}

/// Finds, parses and validates the config (SPEC section 8).
public enum ConfigLoader {
    /// Lookup order: `--config`, `$DROVER_CONFIG`, `$XDG_CONFIG_HOME/drover/config.jsonc`
    /// (`~/.config` when unset); with none, the built-in defaults.
    public static func load(explicitPath: String?, environment: [String: String]) throws(ConfigError) -> DroverConfig {
        guard let path = ConfigIdentity.locate(explicitPath: explicitPath, environment: environment) else { return DroverConfig() }
        return try load(file: path)
    }

    public static func load(file: String) throws(ConfigError) -> DroverConfig {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.read(file)
        } catch {
            throw ConfigError(file: file, line: nil, keyPath: nil, message: error.description)
        }
        return try parse(bytes, file: file)
    }

    /// Whether a file is oh-my-opencode's, read for its `background_task` object only.
    static func isOhMyOpencode(_ file: String) -> Bool {
        let name = FileSystem.basename(of: file)
        return name == "oh-my-opencode.json" || name == "oh-my-opencode.jsonc"
    }

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> DroverConfig {
        let parsed: JSONParser.Parsed
        do {
            parsed = try JSONParser.parse(bytes, options: .init(jsonc: true, recordLines: true))
        } catch {
            throw ConfigError(file: file, line: error.line, keyPath: nil, message: "\(error.reason) (column \(error.column))")
        }
        var reader = ConfigReader(file: file, lines: parsed.lines, lenient: isOhMyOpencode(file))
        var config = DroverConfig()
        config.source = file
        config.digest = ConfigIdentity.digest(bytes)
        guard case .object(let root) = parsed.value else {
            throw ConfigError(file: file, line: 1, keyPath: nil, message: "expected an object at the top level, found \(parsed.value.typeName)")
        }
        if let settings = root["background_task"] {
            try reader.readSettings(settings, into: &config)
        }
        if !reader.lenient, let agents = root["agents"] {
            try reader.readAgents(agents, into: &config)
        }
        config.warnings = reader.warnings
        return config
    }
}

/// Walks the parsed config, checking every value; knows the line of each key path.
struct ConfigReader {
    let file: String
    let lines: [String: Int]
    /// oh-my-opencode.json: unknown keys are warned about, not errors.
    let lenient: Bool
    var warnings: [String] = []

    func fail(_ path: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: lines[path], keyPath: path, message: message)
    }

    func object(_ value: JSONValue, _ path: String) throws(ConfigError) -> JSONObject {
        guard case .object(let object) = value else { throw fail(path, "expected an object, found \(value.typeName)") }
        return object
    }

    func count(_ value: JSONValue, _ path: String) throws(ConfigError) -> Int {
        guard let n = value.intValue, n >= 0 else { throw fail(path, "expected a whole number of 0 or more, found \(describe(value))") }
        return n
    }

    func bool(_ value: JSONValue, _ path: String) throws(ConfigError) -> Bool {
        guard case .bool(let flag) = value else { throw fail(path, "expected true or false, found \(value.typeName)") }
        return flag
    }

    func string(_ value: JSONValue, _ path: String) throws(ConfigError) -> String {
        guard case .string(let s) = value else { throw fail(path, "expected a string, found \(value.typeName)") }
        return s
    }

    func strings(_ value: JSONValue, _ path: String, nonEmpty: Bool = false) throws(ConfigError) -> [String] {
        guard case .array(let items) = value else { throw fail(path, "expected an array of strings, found \(value.typeName)") }
        var result: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else { throw fail("\(path).\(i)", "expected a string, found \(item.typeName)") }
            result.append(s)
        }
        if nonEmpty && result.isEmpty { throw fail(path, "must not be empty") }
        return result
    }

    func duration(_ value: JSONValue, _ path: String) throws(ConfigError) -> Int {
        guard let ms = DurationText.milliseconds(value) else {
            throw fail(path, "expected a duration (milliseconds, or a string such as \"1500ms\", \"90s\", \"30m\", \"2h\"), found \(describe(value))")
        }
        return ms
    }

    /// Bytes: a number, or a string with K, M, G or T (powers of 1024).
    func size(_ value: JSONValue, _ path: String) throws(ConfigError) -> Int {
        if let n = value.intValue, n >= 0 { return n }
        if case .string(let s) = value, let last = s.uppercased().last {
            let scales: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
            var digits = String(s.dropLast())
            if digits.uppercased().hasSuffix("I") { digits = String(digits.dropLast()) }  // "512Mi"
            if let scale = scales[last], let n = Double(digits), n >= 0 { return Int(n * Double(scale)) }
            if let n = Int(s), n >= 0 { return n }
        }
        throw fail(path, "expected a size in bytes (a number, or a string such as \"512M\" or \"2G\"), found \(describe(value))")
    }

    func describe(_ value: JSONValue) -> String {
        switch value {
        case .string: return FieldReader.describe(value)  // long strings cut
        case .number: return JSONWriter.string(value)
        default: return value.typeName
        }
    }

    mutating func unknown(_ path: String) throws(ConfigError) {
        if lenient {
            warnings.append("\(file): ignoring \(path), which drover does not use")
        } else {
            throw fail(path, "unknown key")
        }
    }

    /// A timer key, in its own name or the anchor's millisecond form (`staleTimeoutMs`).
    /// Returns false when the key is not a timer.
    func readTimer(_ key: String, _ value: JSONValue, _ path: String, into timers: inout TimerSettings) throws(ConfigError) -> Bool {
        if key == "stablePolls" {
            timers.stablePolls = try count(value, path)
            return true
        }
        for (name, keyPath) in TimerSettings.durationKeys where key == name || key == name + "Ms" {
            if key.hasSuffix("Ms"), value.intValue == nil {
                throw fail(path, "expected a number of milliseconds, found \(describe(value))")
            }
            timers[keyPath: keyPath] = try duration(value, path)
            return true
        }
        return false
    }

    /// A circuit-breaker key; false when the key is not one.
    func readBreaker(_ key: String, _ value: JSONValue, _ path: String, into breaker: inout BreakerSettings) throws(ConfigError) -> Bool {
        switch key {
        case "maxToolCalls": breaker.maxToolCalls = try count(value, path)
        case "maxRepeatedToolCalls": breaker.maxRepeatedToolCalls = try count(value, path)
        case "maxTranscriptBytes": breaker.maxTranscriptBytes = try size(value, path)
        default: return false
        }
        return true
    }

    mutating func readSettings(_ value: JSONValue, into config: inout DroverConfig) throws(ConfigError) {
        let settings = try object(value, "background_task")
        for (key, value) in settings.members {
            let path = "background_task.\(key)"
            switch key {
            case "defaultConcurrency": config.defaultConcurrency = try count(value, path)
            case "globalConcurrency": config.globalConcurrency = try count(value, path)
            case "providerConcurrency": config.providerConcurrency = try concurrencyLimits(value, path)
            case "modelConcurrency": config.modelConcurrency = try concurrencyLimits(value, path)
            case "onComplete": config.onComplete = try strings(value, path, nonEmpty: true)
            case "maxDepth": config.maxDepth = try count(value, path)
            case "launcher": config.launcher = try readLauncher(value, path)
            case "adaptiveConcurrency": config.adaptiveConcurrency = try bool(value, path)
            case "budgets": config.budgets = try readBudgets(value, path)
            case "prices": config.prices = try readPrices(value, path)
            case "fallbackAfter": config.fallbackAfter = try duration(value, path)
            case "maxBufferedBytes":
                let n = try size(value, path)
                guard n >= 64 << 10 else { throw fail(path, "must be at least 64 KiB") }
                config.maxBufferedBytes = n
            case "maxConnections":
                let n = try count(value, path)
                guard n >= 1 else { throw fail(path, "must be at least 1") }
                config.maxConnections = n
            case "retention": config.retention = try readRetention(value, path)
            case "maxLogBytes":
                let n = try size(value, path)
                guard n >= 1 << 10 else { throw fail(path, "must be at least 1 KiB") }
                config.maxLogBytes = n
            case "maxLogFiles":
                let n = try count(value, path)
                guard n >= 1 else { throw fail(path, "must be at least 1") }
                config.maxLogFiles = n
            case "maxFrameBytes":
                let n = try size(value, path)
                guard n >= 64 else { throw fail(path, "must be at least 64 bytes") }
                config.maxFrameBytes = n
            default:
                if try !readTimer(key, value, path, into: &config.timers), try !readBreaker(key, value, path, into: &config.breaker),
                   try !readRetry(key, value, path, into: &config.retry), try !readSpendLimit(key, value, path, into: &config.spendLimits) {
                    try unknown(path)
                }
            }
        }
    }

    /// `{"keepEnded": DURATION, "maxEnded": COUNT}`.
    func readRetention(_ value: JSONValue, _ path: String) throws(ConfigError) -> Retention {
        var retention = Retention()
        for (key, item) in try object(value, path).members {
            let p = "\(path).\(key)"
            switch key {
            case "keepEnded":
                let ms = try duration(item, p)
                guard ms >= 1000 else { throw fail(p, "must be at least 1s") }
                retention.keepEndedMs = ms
            case "maxEnded": retention.maxEnded = try count(item, p)
            default: throw fail(p, "unknown key (retention has keepEnded, maxEnded)")
            }
        }
        return retention
    }

    func concurrencyLimits(_ value: JSONValue, _ path: String) throws(ConfigError) -> [String: Int] {
        var result: [String: Int] = [:]
        for (key, limit) in try object(value, path).members { result[key] = try count(limit, "\(path).\(key)") }
        return result
    }

    mutating func readAgents(_ value: JSONValue, into config: inout DroverConfig) throws(ConfigError) {
        for (name, entry) in try object(value, "agents").members {
            let base = "agents.\(name)"
            guard !name.isEmpty, name != "command" else { throw fail(base, "\"\(name)\" is not a usable agent name") }
            let fields = try object(entry, base)
            guard let commandValue = fields["command"] else { throw fail(base, "an agent needs \"command\" (an argv array)") }
            var agent = AgentConfig(name: name, command: try strings(commandValue, "\(base).command", nonEmpty: true))
            for (key, value) in fields.members {
                let path = "\(base).\(key)"
                switch key {
                case "command": break
                case "protocol":
                    guard let p = WorkerProtocol(rawValue: try string(value, path)) else {
                        throw fail(path, "expected \"framed\" or \"raw\", found \(describe(value))")
                    }
                    agent.workerProtocol = p
                case "provider": agent.provider = try string(value, path)
                case "model": agent.model = try string(value, path)
                case "description": agent.description = try string(value, path)
                case "cwd": agent.cwd = try string(value, path)
                case "env":
                    for (name, v) in try object(value, path).members { agent.env[name] = try string(v, "\(path).\(name)") }
                case "passEnv": agent.passEnv = try strings(value, path)
                case "limits": agent.limits = try readLimits(value, path)
                case "fallbackModels":
                    agent.fallbackModels = try strings(value, path)
                    for (index, model) in agent.fallbackModels.enumerated() {
                        let parts = model.split(separator: "/", maxSplits: 1)
                        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                            throw fail("\(path).\(index)", "expected \"provider/model\", found \"\(model)\"")
                        }
                    }
                case "fallbackAfter": agent.fallbackAfter = try duration(value, path)
                case "estimateCostUsd": agent.estimateCostUsd = try money(value, path)
                case "workdir":
                    let mode = try string(value, path)
                    guard let workdir = WorkdirMode(rawValue: mode) else {
                        throw fail(path, "workdir is \"task\" (a fresh folder) or \"worktree\" (a git worktree), found \"\(mode)\" (use cwd for a folder)")
                    }
                    agent.workdir = workdir
                case "launcher": agent.launcher = try readLauncher(value, path)
                case "sandbox":
                    do {
                        agent.sandbox = try SandboxSettings.read(value, path)
                    } catch {
                        throw fail(error.field ?? path, error.message)
                    }
                case "repo": agent.worktree.repo = try string(value, path)
                case "base":
                    let base = try string(value, path)
                    guard !base.isEmpty, !base.hasPrefix("-"), !base.hasPrefix("@") else {
                        throw fail(path, "an agent's base is a commit, branch or tag (an @NAME base belongs to a task), found \"\(base)\"")
                    }
                    agent.worktree.base = base
                case "commit": agent.worktree.commit = try bool(value, path)
                case "keepWorktree": agent.worktree.keepWorktree = try bool(value, path)
                default:
                    if try !readTimer(key, value, path, into: &agent.timers), try !readBreaker(key, value, path, into: &agent.breaker),
                       try !readRetry(key, value, path, into: &agent.retry), try !readSpendLimit(key, value, path, into: &agent.spendLimits) {
                        throw fail(path, "unknown key")
                    }
                }
            }
            config.agents[name] = agent
        }
    }

    /// `{"type": "slurm", "partition", "licenses", "srunArgs", "srun"}`, or `{"type": "local"}`
    /// (an agent's way to undo a global Slurm launcher).
    func readLauncher(_ value: JSONValue, _ path: String) throws(ConfigError) -> Launcher {
        let members = try object(value, path)
        guard let kind = members["type"] else { throw fail(path + ".type", "a launcher needs \"type\": \"slurm\" or \"local\"") }
        switch try string(kind, path + ".type") {
        case "local":
            if let extra = members.members.first(where: { $0.0 != "type" }) { throw fail("\(path).\(extra.0)", "a local launcher takes no settings") }
            return .local
        case "slurm":
            var launcher = LauncherSettings()
            for (key, item) in members.members {
                let p = "\(path).\(key)"
                switch key {
                case "type": break
                case "partition": launcher.partition = try string(item, p)
                case "licenses": launcher.licenses = try bool(item, p)
                case "srunArgs": launcher.srunArgs = try strings(item, p)
                case "srun":
                    launcher.srun = try string(item, p)
                    if launcher.srun.isEmpty { throw fail(p, "expected a program name or path, found \"\"") }
                default: throw fail(p, "unknown key (a slurm launcher has partition, licenses, srunArgs, srun)")
                }
            }
            return .slurm(launcher)
        case let other:
            throw fail(path + ".type", "the launcher types are \"slurm\" and \"local\", found \"\(other)\"")
        }
    }

    func readLimits(_ value: JSONValue, _ path: String) throws(ConfigError) -> ResourceLimits {
        var limits = ResourceLimits()
        for (key, value) in try object(value, path).members {
            let p = "\(path).\(key)"
            switch key {
            case "cpuSeconds": limits.cpuSeconds = try count(value, p)
            case "memory": limits.memory = try size(value, p)
            case "openFiles": limits.openFiles = try count(value, p)
            case "processes": limits.processes = try count(value, p)
            case "fileSize": limits.fileSize = try size(value, p)
            default: throw fail(p, "unknown key (known: cpuSeconds, memory, openFiles, processes, fileSize)")
            }
        }
        return limits
    }
}

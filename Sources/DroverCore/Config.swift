import DroverWire

/// The timers of SPEC section 4. Each level (config, agent, task) may set any of them; unset
/// ones fall through to the level below, then to the defaults.
public struct TimerSettings: Sendable, Equatable {
    public var taskTtl: Int?
    public var staleTimeout: Int?
    public var queuedTtl: Int?
    public var pollInterval: Int?
    public var minStabilityTime: Int?
    public var stablePolls: Int?
    public var minIdleTime: Int?
    public var killGrace: Int?

    public init() {}

    static var durationKeys: [(String, WritableKeyPath<TimerSettings, Int?>)] {
        [
            ("taskTtl", \.taskTtl), ("staleTimeout", \.staleTimeout), ("queuedTtl", \.queuedTtl),
            ("pollInterval", \.pollInterval), ("minStabilityTime", \.minStabilityTime),
            ("minIdleTime", \.minIdleTime), ("killGrace", \.killGrace),
        ]
    }

    /// This level over `base`: what is set here wins.
    public func over(_ base: TimerSettings) -> TimerSettings {
        var merged = base
        for (_, path) in Self.durationKeys where self[keyPath: path] != nil { merged[keyPath: path] = self[keyPath: path] }
        if let stablePolls { merged.stablePolls = stablePolls }
        return merged
    }

    public var resolved: ResolvedTimers {
        ResolvedTimers(
            taskTtl: taskTtl ?? 30 * 60_000, staleTimeout: staleTimeout ?? 3 * 60_000, queuedTtl: queuedTtl ?? 0,
            pollInterval: pollInterval ?? 2000, minStabilityTime: minStabilityTime ?? 10_000,
            stablePolls: stablePolls ?? 3, minIdleTime: minIdleTime ?? 5000, killGrace: killGrace ?? 3000)
    }
}

/// Timers with every value decided, in milliseconds (0 turns a timer off).
public struct ResolvedTimers: Sendable, Equatable {
    public var taskTtl: Int
    public var staleTimeout: Int
    public var queuedTtl: Int
    public var pollInterval: Int
    public var minStabilityTime: Int
    public var stablePolls: Int
    public var minIdleTime: Int
    public var killGrace: Int
}

/// The circuit breaker (what the design drover replaces learned from an 809-call loop that
/// cost $350): limits on a worker's tool calls and transcript. Set at any level, like timers.
public struct BreakerSettings: Sendable, Equatable {
    public var maxToolCalls: Int?
    public var maxRepeatedToolCalls: Int?
    public var maxTranscriptBytes: Int?

    public init() {}

    public func over(_ base: BreakerSettings) -> BreakerSettings {
        var merged = base
        if let maxToolCalls { merged.maxToolCalls = maxToolCalls }
        if let maxRepeatedToolCalls { merged.maxRepeatedToolCalls = maxRepeatedToolCalls }
        if let maxTranscriptBytes { merged.maxTranscriptBytes = maxTranscriptBytes }
        return merged
    }

    /// Defaults: 4,000 tool calls, 20 identical ones in a row, 1 GiB of transcript.
    /// 0 turns a rule off.
    public var resolved: (maxToolCalls: Int, maxRepeatedToolCalls: Int, maxTranscriptBytes: Int) {
        (maxToolCalls ?? 4000, maxRepeatedToolCalls ?? 20, maxTranscriptBytes ?? 1 << 30)
    }
}

/// Resource limits per agent or task (applied by the worker launcher; see issue 5).
public struct ResourceLimits: Sendable, Equatable {
    public var cpuSeconds: Int?
    public var memory: Int?
    public var openFiles: Int?
    public var processes: Int?
    public var fileSize: Int?
    public init() {}

    public var isEmpty: Bool { self == ResourceLimits() }

    /// This level over `base`: what is set here wins.
    public func over(_ base: ResourceLimits) -> ResourceLimits {
        var merged = base
        if let cpuSeconds { merged.cpuSeconds = cpuSeconds }
        if let memory { merged.memory = memory }
        if let openFiles { merged.openFiles = openFiles }
        if let processes { merged.processes = processes }
        if let fileSize { merged.fileSize = fileSize }
        return merged
    }

    /// The arguments of `drover-limits` before "--": each limit or "-".
    var helperArguments: [String] {
        [cpuSeconds, memory, openFiles, processes, fileSize].map { $0.map(String.init) ?? "-" }
    }
}

public enum WorkerProtocol: String, Sendable {
    case framed, raw
}

/// A named agent: which worker runs it and with what defaults.
public struct AgentConfig: Sendable, Equatable {
    public var name: String
    public var command: [String]
    public var workerProtocol: WorkerProtocol = .framed
    public var provider: String?
    public var model: String?
    public var description: String?
    public var cwd: String?
    public var env: [String: String] = [:]
    public var passEnv: [String] = []
    public var limits = ResourceLimits()
    public var timers = TimerSettings()
    public var breaker = BreakerSettings()
    public var retry = RetrySettings()
    public var spendLimits = SpendLimits()
    /// A task's expected cost, for budgets' admission (else the mean of the agent's completed tasks).
    public var estimateCostUsd: Double?
    /// `provider/model`s an attempt moves to when its own pool cools down too long (SPEC 11).
    public var fallbackModels: [String] = []
    /// How long a cooldown must still last for the next attempt to take a fallback model.
    public var fallbackAfter: Int?
    /// Where its tasks run when not in their cwd: a private folder or a git worktree.
    public var workdir: WorkdirMode?
    /// A worktree task's repo, base, commit and keepWorktree.
    public var worktree = WorktreeSettings()
    /// Workers here or through srun on a Slurm cluster (nil: the global launcher).
    public var launcher: Launcher?
    /// Its workers under bubblewrap (nil: no sandbox unless a task asks for one).
    public var sandbox: SandboxSettings?
    /// Folders a sandboxed worker of this agent writes whatever `writable` says: a real
    /// agent CLI's own config and session folders (the built-in agents' preset).
    public var sandboxWritable: [String] = []

    public init(name: String, command: [String], workerProtocol: WorkerProtocol = .framed, provider: String? = nil, model: String? = nil) {
        self.name = name
        self.command = command
        self.workerProtocol = workerProtocol
        self.provider = provider
        self.model = model
    }
}

/// The whole configuration (SPEC section 8).
public struct DroverConfig: Sendable {
    public var defaultConcurrency: Int?
    public var providerConcurrency: [String: Int] = [:]
    public var modelConcurrency: [String: Int] = [:]
    public var globalConcurrency = 0
    public var maxFrameBytes = FrameDecoder.defaultMaxFrameBytes
    /// Bytes of a task's output that may wait for the disk before drover stops reading it,
    /// and bytes of input that may wait for a worker that does not read (SPEC section 16).
    public var maxBufferedBytes = 8 << 20
    /// Control connections the daemon holds open at once; past it, new ones are refused.
    public var maxConnections = 256
    /// Which ended tasks the daemon removes by itself (SPEC 15, `retention`).
    public var retention = Retention()
    /// events.jsonl and usage.jsonl are rotated to `.1`... before they pass this many bytes.
    public var maxLogBytes = 64 << 20
    /// Rotated files kept (`.1` to `.N`); the oldest beyond them is removed.
    public var maxLogFiles = 5
    /// argv run for every task that ends (the daemon's notification hook).
    public var onComplete: [String]?
    public var timers = TimerSettings()
    public var breaker = BreakerSettings()
    public var retry = RetrySettings()
    public var spendLimits = SpendLimits()
    /// Caps on money and tokens over tasks (SPEC 12).
    public var budgets: [Budget] = []
    /// By `provider/model`: the cost of tokens a worker reports without a cost.
    public var prices: [String: Price] = [:]
    /// A pool's limit is a ceiling: rate limits lower the effective limit, completions raise it (SPEC 11).
    public var adaptiveConcurrency = true
    /// See AgentConfig.fallbackAfter (default 30 s).
    public var fallbackAfter = 30_000
    /// How deep drovers may nest (a drover started inside a task is one level deeper).
    public var maxDepth = 3
    /// Every agent's workers through srun, unless the agent says otherwise (SPEC 14).
    public var launcher: Launcher?
    public var agents: [String: AgentConfig]
    /// The file it came from, if any.
    public var source: String?
    /// A digest of that file's bytes as they were loaded (ConfigIdentity.digest).
    public var digest: String?

    /// The file and what it held, to compare with the config a client names.
    public var identity: ConfigIdentity { ConfigIdentity(path: source.map(FileSystem.absolute), digest: digest) }

    /// A pool's limit under this config, for a pool made under an earlier one (a reload):
    /// the rule its name says it came from, else the default.
    public func limit(ofPool id: String) -> Int {
        let fallback = defaultConcurrency ?? 5
        if id.hasPrefix("model:") { return modelConcurrency[String(id.dropFirst(6))] ?? fallback }
        if id.hasPrefix("provider:") { return providerConcurrency[String(id.dropFirst(9))] ?? fallback }
        return fallback
    }
    /// Things worth telling the user that are not errors (ignored keys of oh-my-opencode.json).
    public var warnings: [String] = []

    public init() {
        agents = DroverConfig.builtInAgents
    }

    /// The mock agent under the three names the demo and a new machine use.
    public static let builtInAgents: [String: AgentConfig] = {
        var agents: [String: AgentConfig] = [:]
        for (name, text) in [
            ("explore", "searches the code base"), ("librarian", "reads documentation"), ("oracle", "reviews designs"),
        ] {
            var agent = AgentConfig(name: name, command: ["drover-mock-agent"], provider: "mock", model: nil)
            agent.description = "\(text) (built-in mock agent)"
            agents[name] = agent
        }
        for agent in realAgents { agents[agent.name] = agent }
        return agents
    }()

    /// Real agent CLIs run through `drover-adapter`. Each gets the variables its CLI reads
    /// for credentials and settings (and nothing else of the supervisor's). The stability
    /// rule is off: a model thinking quietly is not done; the CLI's own answer ends the task.
    static let realAgents: [AgentConfig] = [
        realAgent(
            "claude", provider: "anthropic", description: "Claude Code (claude -p), through drover-adapter",
            passEnv: ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR"],
            sandboxWritable: ["~/.claude", "~/.claude.json", "~/.cache/claude"]),
        realAgent(
            "opencode", provider: "opencode", description: "opencode (opencode run), through drover-adapter",
            passEnv: [
                "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY",
                "OPENCODE_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
            ], sandboxWritable: ["~/.config/opencode", "~/.local/share/opencode", "~/.local/state/opencode", "~/.cache/opencode"]),
        realAgent(
            "codex", provider: "openai", description: "Codex (codex exec), through drover-adapter",
            passEnv: ["OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"], sandboxWritable: ["~/.codex"]),
    ]

    private static func realAgent(_ name: String, provider: String, description: String, passEnv: [String], sandboxWritable: [String]) -> AgentConfig {
        var agent = AgentConfig(name: name, command: ["drover-adapter", name], provider: provider, model: nil)
        agent.sandboxWritable = sandboxWritable
        agent.description = description
        agent.passEnv = passEnv
        agent.timers.stablePolls = 0
        return agent
    }

    /// The implicit agent of a task given as an argv array.
    public static let commandAgent: AgentConfig = AgentConfig(name: "command", command: [], workerProtocol: .raw, provider: "local")

    /// SPEC section 3: the pool a task counts against and its limit.
    public func pool(provider: String?, model: String?, key: String) -> PoolAssignment {
        if let provider, let model, let limit = modelConcurrency["\(provider)/\(model)"] {
            return PoolAssignment(id: "model:\(provider)/\(model)", limit: limit)
        }
        if let model, let limit = modelConcurrency[model] {
            return PoolAssignment(id: "model:\(model)", limit: limit)
        }
        if let provider, let limit = providerConcurrency[provider] {
            return PoolAssignment(id: "provider:\(provider)", limit: limit)
        }
        return PoolAssignment(id: "key:\(key)", limit: defaultConcurrency ?? 5)
    }
}

/// The agent CLIs the adapter knows, and how each is invoked.
public enum CLIKind: String, CaseIterable, Sendable {
    case claude, opencode, codex
    /// Codex's JSON-RPC app-server: one long-lived process per task, run by
    /// CodexAppServerRun rather than AdapterRun.
    case codexAppServer = "codex-app-server"

    /// The kinds as a usage message lists them.
    static var names: String {
        let all = allCases.map(\.rawValue)
        return all.dropLast().joined(separator: ", ") + " or " + all[all.count - 1]
    }

    /// The program looked up on PATH unless `--program` names another.
    public var defaultProgram: String { rawValue }

    /// A translator for one run. `costBefore`: the conversation's cost so far by the CLI's own
    /// running count (0: a new conversation; nil: unknown), for CLIs that keep one.
    public func makeTranslator(costBefore: Double? = 0) -> any StreamTranslator {
        switch self {
        case .claude: return ClaudeTranslator(costBefore: costBefore)
        case .opencode: return OpencodeTranslator()
        case .codex: return CodexTranslator()
        case .codexAppServer: return CodexAppServerTranslator()
        }
    }

    /// The CLI's environment: the adapter's own, plus what makes drover's pool-wide backoff
    /// govern rate limits. Claude Code retries a failed API call up to 10 times with its own
    /// backoff (about 3 minutes, ignoring retry-after) unless `CLAUDE_CODE_MAX_RETRIES` says
    /// otherwise: it gets `cliRetries` unless the environment already sets it.
    public func environment(_ base: [String: String], cliRetries: Int) -> [String: String] {
        var environment = base
        if self == .claude && environment["CLAUDE_CODE_MAX_RETRIES"] == nil {
            environment["CLAUDE_CODE_MAX_RETRIES"] = String(cliRetries)
        }
        return environment
    }

    /// The longest prompt given to Codex as an argument. Linux refuses an exec with any one
    /// argument over 128 KiB (MAX_ARG_STRLEN), so a longer prompt goes to stdin, which
    /// `codex exec -` reads.
    public static let longestArgumentPrompt = 100_000

    /// argv (without argv[0]) and what goes to the CLI's stdin for one turn. The prompt goes
    /// where each CLI reads it most faithfully: Claude Code and opencode read a piped stdin
    /// (opencode re-quotes argv words that hold spaces), Codex takes it after `--` as its
    /// SDK does, or as `-` and stdin when it is too long for an argument. `extra` are the
    /// user's own flags from the agent's command.
    public func invocation(prompt: String, model: String?, resumeSessionID: String?, extra: [String]) -> CLIInvocation {
        let model = model.flatMap { $0.isEmpty ? nil : $0 }
        switch self {
        case .claude:
            var arguments = ["-p", "--output-format", "stream-json", "--verbose"]
            if let model { arguments += ["--model", model] }
            // `--resume=ID`: a value starting with "-" can never be taken for a flag.
            if let resumeSessionID { arguments.append("--resume=\(resumeSessionID)") }
            return CLIInvocation(arguments: arguments + extra, stdinText: prompt)
        case .opencode:
            var arguments = ["run", "--format", "json"]
            if let model { arguments += ["--model", model] }
            if let resumeSessionID { arguments += ["--session", resumeSessionID] }
            return CLIInvocation(arguments: arguments + extra, stdinText: prompt)
        case .codex:
            var arguments = ["exec", "--json"]
            if let model { arguments += ["--model", model] }
            arguments += extra
            if let resumeSessionID { arguments += ["resume", resumeSessionID] }
            if prompt.utf8.count > Self.longestArgumentPrompt { return CLIInvocation(arguments: arguments + ["--", "-"], stdinText: prompt) }
            return CLIInvocation(arguments: arguments + ["--", prompt], stdinText: nil)
        case .codexAppServer:
            // The server takes prompts, the model and the thread over JSON-RPC, not argv.
            return CLIInvocation(arguments: extra, stdinText: nil)
        }
    }
}

public struct CLIInvocation: Equatable, Sendable {
    public var arguments: [String]
    /// Written to the CLI's stdin, which is then closed; nil closes it at once.
    public var stdinText: String?
}

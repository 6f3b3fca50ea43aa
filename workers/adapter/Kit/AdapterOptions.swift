import DroverWire

/// `drover-adapter KIND [--program PATH] [--heartbeat D] [--grace D] [--linger D] [--cli-retries N]
/// [--approval decline|accept] [--approval-policy WHEN] [--sandbox MODE] [-- CLI-ARGS...]`
public struct AdapterOptions: Equatable, Sendable {
    public var kind: CLIKind
    /// The CLI program: a path, or a name looked up on PATH.
    public var program: String
    /// Arguments added to every invocation of the CLI (after the adapter's own flags).
    public var extraArguments: [String] = []
    /// A heartbeat goes out when nothing else was sent for this long.
    public var heartbeatMs = 5000
    /// After SIGTERM to the CLI's process group, SIGKILL follows after this. Keep it below
    /// drover's killGrace, so the CLI is gone before drover gives up on the adapter.
    public var graceMs = 1000
    /// How long the CLI may linger after its final answer before it is stopped.
    public var lingerMs = 5000
    /// Claude Code: how often the CLI itself retries a failed API call
    /// (`CLAUDE_CODE_MAX_RETRIES`, unless the environment sets it). Low, so that a rate limit
    /// reaches drover, whose backoff is shared by the whole pool, within seconds.
    public var cliRetries = 1
    /// codex-app-server: how the server's approval requests are answered.
    public var approval = CodexApproval.decline
    /// codex-app-server: when Codex asks (its `approvalPolicy`); nil leaves it to its config.
    public var approvalPolicy: CodexApprovalPolicy?
    /// codex-app-server: the sandbox its threads' commands run in.
    public var sandbox = CodexSandbox.workspaceWrite

    public static let usage = """
        usage: drover-adapter claude|opencode|codex|codex-app-server [--program PATH] [--heartbeat D] [--grace D] [--linger D]
                              [--cli-retries N] [--approval decline|accept] [--approval-policy WHEN] [--sandbox MODE]
                              [-- CLI-ARGS...]
          --program PATH   the CLI to run (default: the kind's name, found on PATH)
          --heartbeat D    heartbeat interval while the CLI is quiet (default 5s)
          --grace D        SIGTERM-to-SIGKILL grace when stopping the CLI (default 1s)
          --linger D       how long the CLI may run on after its final answer (default 5s)
          --cli-retries N  claude only: CLAUDE_CODE_MAX_RETRIES for the CLI unless the environment
                           sets it (default 1: drover's pool-wide backoff governs rate limits)
          --approval P     codex-app-server only: how its approval requests (a command outside the
                           sandbox, a file change) are answered: decline (default) or accept
          --approval-policy WHEN
                           codex-app-server only: when Codex asks: untrusted (before any command
                           not known to be safe), on-failure, on-request (when the model wants
                           out of the sandbox) or never (default: Codex's config, on-request)
          --sandbox MODE   codex-app-server only: read-only, workspace-write (default) or
                           danger-full-access
          -- CLI-ARGS      extra arguments for every CLI run (permissions, sandbox, ...)
        Durations are milliseconds or 1500ms, 90s, 2m.
        """

    public init(kind: CLIKind) {
        self.kind = kind
        program = kind.defaultProgram
    }

    public struct UsageError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ arguments: [String]) throws(UsageError) -> AdapterOptions {
        guard let first = arguments.first else { throw UsageError(description: "missing the CLI kind (\(CLIKind.names))") }
        guard let kind = CLIKind(rawValue: first) else {
            throw UsageError(description: "unknown CLI kind \"\(first)\": expected \(CLIKind.names)")
        }
        var options = AdapterOptions(kind: kind)
        var index = 1
        func value(_ flag: String) throws(UsageError) -> String {
            index += 1
            guard index < arguments.count else { throw UsageError(description: "\(flag) needs a value") }
            return arguments[index]
        }
        func duration(_ flag: String) throws(UsageError) -> Int {
            let text = try value(flag)
            guard let ms = DurationText.milliseconds(text), ms > 0 else {
                throw UsageError(description: "\(flag): \"\(text)\" is not a positive duration")
            }
            return ms
        }
        /// A codex-app-server setting named by one of `T`'s values.
        func choice<T: RawRepresentable & CaseIterable>(_ flag: String, _: T.Type) throws(UsageError) -> T where T.RawValue == String {
            let text = try value(flag)
            guard let chosen = T(rawValue: text) else {
                throw UsageError(description: "\(flag): \"\(text)\" is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            try codexAppServerOnly(flag, kind)
            return chosen
        }
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "--":
                options.extraArguments = Array(arguments[(index + 1)...])
                return options
            case "--program":
                options.program = try value(argument)
                guard !options.program.isEmpty else { throw UsageError(description: "--program needs a non-empty value") }
            case "--heartbeat": options.heartbeatMs = try duration(argument)
            case "--grace": options.graceMs = try duration(argument)
            case "--linger": options.lingerMs = try duration(argument)
            case "--cli-retries":
                let text = try value(argument)
                guard let count = Int(text), count >= 0, count <= 100 else {
                    throw UsageError(description: "--cli-retries: \"\(text)\" is not a whole number from 0 to 100")
                }
                guard kind == .claude else {
                    throw UsageError(description: "--cli-retries is for claude only: \(kind.rawValue) has no retry count the adapter can set")
                }
                options.cliRetries = count
            case "--approval": options.approval = try choice(argument, CodexApproval.self)
            case "--approval-policy": options.approvalPolicy = try choice(argument, CodexApprovalPolicy.self)
            case "--sandbox": options.sandbox = try choice(argument, CodexSandbox.self)
            default:
                throw UsageError(description: "unknown option \"\(argument)\" (CLI arguments go after --)")
            }
            index += 1
        }
        return options
    }

    private static func codexAppServerOnly(_ flag: String, _ kind: CLIKind) throws(UsageError) {
        guard kind == .codexAppServer else {
            throw UsageError(description: "\(flag) is for codex-app-server only: \(kind.rawValue) takes its permissions after --")
        }
    }
}

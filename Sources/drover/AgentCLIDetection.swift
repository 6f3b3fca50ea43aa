import DroverCore

/// An agent CLI found on this machine.
struct DetectedCLI {
    /// "claude", "codex" or "opencode": the drover-adapter kind.
    let kind: String
    let path: String
    /// What `--version` printed (first line), nil when it failed or took too long.
    let version: String?
    /// Whether a bare name finds it (else the config names its path).
    let onPath: Bool
}

enum AgentCLIDetection {
    /// Best first: the order `init` picks in.
    static let kinds = ["claude", "codex", "opencode"]

    /// Where the installers put them besides PATH.
    static func usualFolders(home: String) -> [String] {
        ["\(home)/.local/bin", "\(home)/.claude/local", "\(home)/.npm-global/bin", "\(home)/.opencode/bin",
         "\(home)/.bun/bin", "/usr/local/bin", "/opt/homebrew/bin"]
    }

    /// Credential variables a CLI reads; only their names are ever shown.
    static let keyVariables = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "CODEX_API_KEY",
                               "OPENROUTER_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY"]

    static func find(_ name: String, environment: [String: String]) -> (path: String, onPath: Bool)? {
        let pathFolders = (environment["PATH"] ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
        for folder in pathFolders where FileSystem.isExecutableFile(folder + "/" + name) { return (folder + "/" + name, true) }
        guard let home = environment["HOME"], !home.isEmpty else { return nil }
        for folder in usualFolders(home: home) where FileSystem.isExecutableFile(folder + "/" + name) { return (folder + "/" + name, false) }
        return nil
    }

    static func detect(environment: [String: String]) -> [DetectedCLI] {
        var found: [DetectedCLI] = []
        for kind in kinds {
            // Codex's app-server build counts as Codex when no codex is there.
            let names = kind == "codex" ? ["codex", "codex-app-server"] : [kind]
            for name in names {
                guard let (path, onPath) = find(name, environment: environment) else { continue }
                found.append(DetectedCLI(kind: name, path: path, version: version(of: path, environment: environment), onPath: onPath))
                break
            }
        }
        return found
    }

    /// `PROGRAM --version`, argv only, killed after `limitMs`.
    static func version(of program: String, environment: [String: String], limitMs: Int = 5000) -> String? {
        guard let helper = HelperProgram(program, environment: environment) else { return nil }
        let result = helper.runNow(["--version"], timeLimitMs: limitMs)
        guard result.succeeded else { return nil }
        guard let line = result.text.split(separator: "\n").first else { return nil }
        let trimmed = line.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed()
        return trimmed.isEmpty ? nil : String(trimmed)
    }
}

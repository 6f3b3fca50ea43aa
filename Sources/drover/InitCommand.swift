import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover init`: a user config whose explore, librarian and oracle are real agents on the
/// best CLI found here.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Find the agent CLIs installed here and write a config whose explore, librarian and oracle run on the best one.",
        discussion: "Writes $XDG_CONFIG_HOME/drover/config.jsonc (~/.config when unset). An existing config is replaced only with --force, after a copy config.jsonc.bak-TIMESTAMP is kept."
    )

    @Flag(name: .customLong("force"), help: "Replace an existing config (a copy is kept beside it).")
    var force = false

    func run() throws {
        let environment = ProcessEnvironment.current()
        let found = AgentCLIDetection.detect(environment: environment)
        let keys = AgentCLIDetection.keyVariables.filter { !(environment[$0] ?? "").isEmpty }
        let bwrap = AgentCLIDetection.find("bwrap", environment: environment)?.path
        for kind in AgentCLIDetection.kinds {
            if let cli = found.first(where: { $0.kind.hasPrefix(kind) }) {
                Terminal.out("found \(cli.kind): \(cli.path) (\(cli.version ?? "version unknown"))\(cli.onPath ? "" : ", not on PATH")")
            } else {
                Terminal.out("not found: \(kind)")
            }
        }
        Terminal.out("API key variables set: \(keys.isEmpty ? "none" : keys.joined(separator: ", "))")
        Terminal.out("bwrap: \(bwrap ?? "not found (no sandbox preset)")")

        let configHome = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? "") + "/.config")
        let folder = configHome + "/drover"
        let file = folder + "/config.jsonc"
        if FileSystem.exists(file) {
            guard force else {
                Terminal.error("drover init: \(file) exists; run drover init --force to replace it (a copy is kept)")
                throw ExitCode(1)
            }
        }
        guard let best = found.first else {
            Terminal.out("""
                No agent CLI found: explore, librarian and oracle stay drover's mock agent. Install one, then run drover init again:
                  Claude Code: npm install -g @anthropic-ai/claude-code   (or: curl -fsSL https://claude.ai/install.sh | bash)
                  Codex:       npm install -g @openai/codex
                  opencode:    npm install -g opencode-ai   (or: curl -fsSL https://opencode.ai/install | bash)
                """)
            return
        }
        let text = InitConfig.text(cli: best, sandbox: bwrap != nil, keys: keys, environment: environment)
        // The text must load as drover reads it, before anything is replaced.
        do {
            _ = try ConfigLoader.parse(Array(text.utf8), file: file)
        } catch {
            Terminal.error("drover init: internal error, the config written would not load: \(error)")
            throw ExitCode(1)
        }
        do {
            try FileSystem.makeDirectories(folder)
            if FileSystem.exists(file) {
                let stamp = Self.timestamp()
                let copy = "\(file).bak-\(stamp)"
                try FileSystem.writeFile(copy, try FileSystem.read(file), sync: true)
                Terminal.out("kept a copy of the old config: \(copy)")
            }
            try FileSystem.writeAtomically(file, Array(text.utf8))
        } catch {
            Terminal.error("drover init: \(error)")
            throw ExitCode(1)
        }
        Terminal.out("wrote \(file): explore, librarian and oracle run on \(best.kind)\(bwrap != nil ? " in a sandbox" : "")")
        Terminal.out("next: drover doctor, then drover launch --agent explore --prompt \"Find where sessions are stored\" --wait")
    }

    /// Now in UTC as `20261203T175012Z`: a file-name-safe form of the RFC 3339 time.
    static func timestamp() -> String {
        let rfc3339 = Clock.rfc3339(ms: Clock.wallMs())  // 2026-12-03T17:50:12.123Z
        return String(rfc3339.prefix(19).filter { $0 != "-" && $0 != ":" }) + "Z"
    }
}

/// The commented config `drover init` writes.
enum InitConfig {
    struct Role {
        let name: String
        let description: String
        let prompt: String
        let readOnly: Bool
        let web: Bool
        /// Weakest 0 ... strongest 2.
        let strength: Int
    }

    static let roles = [
        Role(name: "explore", description: "finds code: where things are and how they connect (read-only)",
             prompt: """
                You are explore, a code finder working for another agent. Your job: locate the files, functions and data \
                that answer the question, and explain briefly how they connect. Do not change, create or delete any file, \
                do not run commands that modify anything, and do not propose a redesign. Answer with a short list of \
                paths with line numbers, each with one sentence on what is there, then a few sentences that answer the \
                question directly. Say plainly when you could not find something.
                """, readOnly: true, web: false, strength: 0),
        Role(name: "librarian", description: "reads documentation and the web for how a library or tool is meant to be used",
             prompt: """
                You are librarian, a researcher working for another agent. Your job: find how a library, API, tool or \
                format is documented to work, from the project's own docs and from official sources on the web. Do not \
                edit files or run code, and do not guess: when the sources do not say, say so. Answer with the facts \
                asked for, each with its source (URL or file path), a minimal example when one helps, and a note on \
                versions where behaviour differs.
                """, readOnly: true, web: true, strength: 1),
        Role(name: "oracle", description: "reviews a design or a change and says what is wrong with it (read-only; the strongest model)",
             prompt: """
                You are oracle, a senior reviewer working for another agent. Your job: judge the design, plan or change \
                you are given against the code as it is: correctness, failure cases, concurrency, security, and simpler \
                alternatives. Do not edit files and do not write the implementation. Answer with a verdict in one line, \
                then the problems ordered by severity, each with where it is, why it matters and what to do instead, \
                then open questions. Be direct; do not pad with praise.
                """, readOnly: true, web: false, strength: 2),
    ]

    static func text(cli: DetectedCLI, sandbox: Bool, keys: [String], environment: [String: String]) -> String {
        let base = DroverConfig.builtInAgents[cli.kind == "codex-app-server" ? "codex" : cli.kind]
        var out = """
            // drover's config, written by `drover init` on \(InitCommand.timestamp()).
            // Found: \(cli.kind) at \(cli.path) (\(cli.version ?? "version unknown")).
            // API key variables set when it was written: \(keys.isEmpty ? "none (the CLI's own login under HOME is used)" : keys.joined(separator: ", ")).
            // Edit freely; `drover doctor` checks it. Run `drover init --force` to write it again.
            {
              "background_task": {
                // Tasks at once per provider: the limits an account usually bears without rate limits.
                "providerConcurrency": { "anthropic": 3, "openai": 2 },
                // Any other pool (another provider, local commands).
                "defaultConcurrency": 5
              },
              "agents": {

            """
        let entries = roles.map { role -> String in
            var lines: [String] = []
            lines.append("    // \(role.name): \(role.description).")
            lines.append("    \"\(role.name)\": {")
            lines.append("      \"description\": \(JSONWriter.string(.string(role.description))),")
            let (command, commandComment) = command(for: role, cli: cli)
            lines.append("      // \(commandComment)")
            lines.append("      \"command\": \(JSONWriter.string(.array(command.map { .string($0) }))),")
            let (provider, model, modelComment) = providerAndModel(for: role, cli: cli)
            lines.append("      // The pool it counts against (see providerConcurrency above).")
            lines.append("      \"provider\": \"\(provider)\",")
            if let model {
                lines.append("      // \(modelComment)")
                lines.append("      \"model\": \"\(model)\",")
            } else {
                lines.append("      // \(modelComment)")
            }
            // Only the variables set now: `drover doctor` reports each listed one that is unset.
            let all = base?.passEnv ?? []
            let set = all.filter { keys.contains($0) || !(environment[$0] ?? "").isEmpty }
            let unset = all.filter { !set.contains($0) }
            lines.append("      // The CLI's credential and settings variables that were set, passed from drover's environment")
            lines.append("      // (nothing else of it is). Others the CLI reads: \(unset.isEmpty ? "none" : unset.joined(separator: ", ")).")
            lines.append("      \"passEnv\": \(JSONWriter.string(.array(set.map { .string($0) }))),")
            if sandbox {
                let network = "host"
                lines.append("      // Under bubblewrap: only the task's folder, a private /tmp and the CLI's own folders are writable;")
                lines.append("      // the network stays on (the CLI talks to its API); ~/.ssh, ~/.aws and the like are hidden.")
                let writable = JSONWriter.string(.array((base?.sandboxWritable ?? []).map { .string($0) }))
                lines.append("      \"sandbox\": { \"filesystem\": \"workdir\", \"network\": \"\(network)\", \"writable\": \(writable) },")
            } else {
                lines.append("      // No sandbox: bwrap was not found. Install bubblewrap and add")
                lines.append("      // \"sandbox\": { \"filesystem\": \"workdir\", \"network\": \"host\" } to run it under one.")
            }
            lines.append("      // The CLI's own answer ends the task, not a quiet spell.")
            lines.append("      \"stablePolls\": 0")
            lines.append("    }")
            return lines.joined(separator: "\n")
        }
        out += entries.joined(separator: ",\n\n") + "\n  }\n}\n"
        return out
    }

    /// Claude Code's built-in tools a role may use.
    static func claudeTools(_ role: Role) -> String {
        role.web ? "Read,Grep,Glob,WebFetch,WebSearch" : "Read,Grep,Glob"
    }

    static func command(for role: Role, cli: DetectedCLI) -> ([String], String) {
        var adapter = ["drover-adapter", cli.kind]
        if !cli.onPath { adapter += ["--program", cli.path] }
        switch cli.kind {
        case "claude":
            var args = ["--append-system-prompt", role.prompt, "--tools", claudeTools(role)]
            if role.web { args += ["--allowedTools", "WebFetch,WebSearch"] }
            args += ["--disallowedTools", "Bash,Edit,Write,NotebookEdit"]
            return (adapter + ["--"] + args,
                    "Claude Code with the role prompt appended to its own; --tools is the only tools the model is offered (\(claudeTools(role))), "
                    + (role.web ? "web fetch and search allowed without asking; " : "") + "no shell, no edits.")
        case "codex", "codex-app-server":
            let effort = ["low", "medium", "high"][role.strength]
            // The same config overrides for codex exec and the app-server (both take -c).
            var overrides = ["-c", "developer_instructions=" + McpClientSnippets.tomlString(role.prompt),
                             "-c", "model_reasoning_effort=\"\(effort)\""]
            if role.web { overrides += ["-c", "web_search=\"live\""] }
            let said = ", the role prompt as developer instructions, reasoning effort \(effort)" + (role.web ? ", web search on." : ".")
            if cli.kind == "codex-app-server" {
                // The app-server takes its sandbox from drover-adapter (thread/start), not argv.
                return (adapter + ["--sandbox", "read-only", "--"] + overrides,
                        "Codex's app-server with a read-only sandbox for its threads" + said)
            }
            return (adapter + ["--", "--sandbox", "read-only", "--skip-git-repo-check"] + overrides,
                    "codex exec in its own read-only sandbox" + said)
        default:
            // opencode takes agent prompts from its own config files only, so the role runs as its
            // built-in read-only "plan" agent, without drover's role prompt.
            return (adapter + ["--", "--agent", "plan"],
                    "opencode's read-only plan agent (edits and shell need approval, which a background task never gives).")
        }
    }

    static func providerAndModel(for role: Role, cli: DetectedCLI) -> (String, String?, String) {
        switch cli.kind {
        case "claude":
            let model = ["haiku", "sonnet", "opus"][role.strength]
            return ("anthropic", model, ["The fast, cheap model: finding code is many small reads.",
                                         "A mid model: reading and summarising sources.",
                                         "The strongest model: review is where judgement pays."][role.strength] + " (Claude Code's alias)")
        case "codex", "codex-app-server":
            return ("openai", "gpt-5.2", "One model; the reasoning effort above differs per role.")
        default:
            return ("opencode", nil, "No model: opencode's own default. Set \"model\": \"provider/model\" to choose one.")
        }
    }
}

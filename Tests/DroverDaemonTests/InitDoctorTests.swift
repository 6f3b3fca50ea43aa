import DroverCore
import DroverDaemon
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover init`, `drover doctor` and the MCP client snippets, run as the built drover with a
/// controlled environment (env -i): stand-in agent CLIs on a test PATH.
@Suite struct InitDoctorTests {
    struct Setup {
        let folder: String
        let bin: String
        let home: String
        var config: String { home + "/.config/drover/config.jsonc" }
        var state: String { folder + "/state" }

        init() throws {
            folder = try temporaryFolder()
            bin = folder + "/bin"
            home = folder + "/home"
            try FileSystem.makeDirectories(bin)
            try FileSystem.makeDirectories(home)
        }

        /// A stand-in CLI: prints a version for --version.
        func standIn(_ name: String, version: String) throws {
            try FileSystem.writeFile(bin + "/" + name, Array("#!/bin/sh\necho '\(version)'\n".utf8), mode: 0o755)
        }

        /// drover with only this setup's environment (PATH: the stand-ins and the basic tools).
        func drover(_ arguments: [String], extra: [String] = [], path: String? = nil) throws -> CommandResult {
            try runDrover(arguments, in: folder, environment: ["-i", "HOME=\(home)", "PATH=\(path ?? bin + ":/usr/bin:/bin")"] + extra)
        }
    }

    @Test func initMapsEachRoleToTheClaudeFoundAndTheConfigLoads() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        try s.standIn("claude", version: "2.1.332 (Claude Code)")
        try s.standIn("codex", version: "codex-cli 0.159.2")
        let result = try s.drover(["init"], extra: ["ANTHROPIC_API_KEY=secret-value-1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("found claude: \(s.bin)/claude (2.1.332 (Claude Code))"), "\(result.stdout)")
        #expect(result.stdout.contains("found codex: \(s.bin)/codex (codex-cli 0.159.2)"), "\(result.stdout)")
        #expect(result.stdout.contains("not found: opencode"), "\(result.stdout)")
        #expect(result.stdout.contains("ANTHROPIC_API_KEY") && !result.stdout.contains("secret-value-1"), "names only: \(result.stdout)")
        #expect(result.stdout.contains("wrote \(s.config)"), "\(result.stdout)")
        let text = readText(s.config)
        #expect(!text.contains("secret-value-1"))
        let config = try ConfigLoader.load(file: s.config)
        for role in ["explore", "librarian", "oracle"] {
            let agent = try #require(config.agents[role])
            #expect(Array(agent.command.prefix(3)) == ["drover-adapter", "claude", "--"], "\(role): \(agent.command)")
            #expect(agent.provider == "anthropic")
            #expect(agent.command.contains("--append-system-prompt"))
            #expect(agent.passEnv == ["ANTHROPIC_API_KEY"], "only the set variables: \(agent.passEnv)")
            #expect(agent.timers.stablePolls == 0)
        }
        func tools(_ role: String) -> String? {
            let command = config.agents[role]!.command
            return command.firstIndex(of: "--tools").map { command[$0 + 1] }
        }
        #expect(tools("explore") == "Read,Grep,Glob")
        #expect(tools("oracle") == "Read,Grep,Glob")
        #expect(tools("librarian")?.contains("WebFetch") == true)
        #expect(config.agents["oracle"]?.model == "opus")
        #expect(config.providerConcurrency == ["anthropic": 3, "openai": 2])
        #expect(config.defaultConcurrency == 5)
        #expect(text.contains("// explore:"), "commented")
    }

    /// A CLI whose --version never answers is given up after 5 s: its process group (a
    /// grandchild too) is killed and init goes on without a version.
    @Test func initGivesUpOnAVersionThatNeverComes() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        try FileSystem.writeFile(s.bin + "/claude", Array("#!/bin/sh\nsleep 613 &\nexec sleep 614\n".utf8), mode: 0o755)
        let result = try s.drover(["init"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("found claude: \(s.bin)/claude"), "\(result.stdout)")
        let config = try ConfigLoader.load(file: s.config)
        #expect(config.agents["explore"]?.command.prefix(2) == ["drover-adapter", "claude"])
        #expect(eventually(withinMs: 5_000) { Self.processes(withArguments: ["sleep", "613"]).isEmpty && Self.processes(withArguments: ["sleep", "614"]).isEmpty },
                "left behind: \(Self.processes(withArguments: ["sleep", "613"]) + Self.processes(withArguments: ["sleep", "614"]))")
    }

    /// Pids whose command line is exactly `arguments`.
    static func processes(withArguments arguments: [String]) -> [Int32] {
        guard let folder = opendir("/proc") else { return [] }
        defer { closedir(folder) }
        var pids: [Int32] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name) else { continue }
            let words = readText("/proc/\(pid)/cmdline").split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init)
            if words == arguments { pids.append(pid) }
        }
        return pids
    }

    @Test func initUsesCodexWhenItIsTheOnlyCLIAndNamesAProgramOffPath() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        try FileSystem.makeDirectories(s.home + "/.npm-global/bin")
        try FileSystem.writeFile(s.home + "/.npm-global/bin/codex", Array("#!/bin/sh\necho 'codex-cli 0.1'\n".utf8), mode: 0o755)
        let result = try s.drover(["init"])
        #expect(result.status == 0, "\(result.stderr)")
        let config = try ConfigLoader.load(file: s.config)
        let explore = try #require(config.agents["explore"])
        #expect(Array(explore.command.prefix(4)) == ["drover-adapter", "codex", "--program", s.home + "/.npm-global/bin/codex"])
        #expect(explore.command.contains("read-only"))
        #expect(explore.provider == "openai")
    }

    @Test func initRefusesToOverwriteWithoutForceAndKeepsACopyWithIt() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        try s.standIn("claude", version: "2.1.332 (Claude Code)")
        try FileSystem.makeDirectories(s.home + "/.config/drover")
        try FileSystem.writeFile(s.config, Array("{ \"agents\": {} } // mine\n".utf8))
        let refused = try s.drover(["init"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("--force"), "\(refused.stderr)")
        #expect(readText(s.config) == "{ \"agents\": {} } // mine\n")
        let forced = try s.drover(["init", "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let copies = FileSystem.list(s.home + "/.config/drover").filter { $0.hasPrefix("config.jsonc.bak-") }
        #expect(copies.count == 1, "\(copies)")
        #expect(readText(s.home + "/.config/drover/" + (copies.first ?? "")) == "{ \"agents\": {} } // mine\n")
        #expect(try ConfigLoader.load(file: s.config).agents["explore"]?.command.first == "drover-adapter")
    }

    @Test func initWithNothingFoundKeepsTheMockAgents() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        let result = try s.drover(["init"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("No agent CLI found"))
        #expect(result.stdout.contains("npm install -g @anthropic-ai/claude-code"))
        #expect(!FileSystem.exists(s.config))
        let config = try ConfigLoader.load(explicitPath: nil, environment: ["HOME": s.home])
        #expect(config.agents["explore"]?.command == ["drover-mock-agent"])
    }

    /// A good setup: init's config with its variable set, a private state folder.
    func goodSetup() throws -> Setup {
        let s = try Setup()
        try s.standIn("claude", version: "2.1.332 (Claude Code)")
        _ = try s.drover(["init"], extra: ["ANTHROPIC_API_KEY=k"])
        try FileSystem.makeDirectories(s.state)
        return s
    }

    @Test func doctorPassesOnAGoodSetupAndItsJSONParses() throws {
        let s = try goodSetup()
        defer { removeTree(s.folder) }
        let result = try s.drover(["doctor", "--state-dir", s.state], extra: ["ANTHROPIC_API_KEY=k"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("ok   agent explore CLI: \(s.bin)/claude (2.1.332 (Claude Code))"), "\(result.stdout)")
        let json = try s.drover(["doctor", "--state-dir", s.state, "--json"], extra: ["ANTHROPIC_API_KEY=k"])
        #expect(json.status == 0)
        let object = try parseObject(json.stdout)
        #expect(object["ok"] == true)
        guard case .array(let checks)? = object["checks"] else { Issue.record("no checks: \(json.stdout)"); return }
        #expect(checks.count >= 8)
    }

    @Test func doctorFailsOnAMissingPassEnvVariable() throws {
        let s = try goodSetup()
        defer { removeTree(s.folder) }
        let result = try s.drover(["doctor", "--state-dir", s.state])
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains("passEnv: not set: ANTHROPIC_API_KEY") && $0.contains("export ANTHROPIC_API_KEY") }, "\(result.stdout)")
    }

    @Test func doctorFailsOnALooseStateFolder() throws {
        let s = try goodSetup()
        defer { removeTree(s.folder) }
        chmod(s.state, 0o777)
        let result = try s.drover(["doctor", "--state-dir", s.state], extra: ["ANTHROPIC_API_KEY=k"])
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(lines.count == 1 && lines[0].contains("state folder") && lines[0].contains("chmod 700"), "\(result.stdout)")
    }

    @Test func doctorFailsOnAMissingCompanion() throws {
        let s = try goodSetup()
        defer { removeTree(s.folder) }
        let alone = s.folder + "/alone"
        try FileSystem.makeDirectories(alone)
        try FileSystem.writeFile(alone + "/drover", try FileSystem.read(droverExecutable), mode: 0o755)
        let out = s.folder + "/alone.out"
        let pid = try spawnChild(["/usr/bin/env", "-i", "HOME=\(s.home)", "PATH=\(s.bin):/usr/bin:/bin", "ANTHROPIC_API_KEY=k",
                                  alone + "/drover", "doctor", "--state-dir", s.state], output: .file(out), stderr: out + ".err")
        #expect(waitForExit(pid) == 1)
        let fails = readText(out).split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        for name in ["drover-warden", "drover-mock-agent", "drover-limits", "drover-adapter"] {
            #expect(fails.contains { $0.contains("companion \(name)") && $0.contains("copy \(name)") }, "\(readText(out))")
        }
    }

    @Test func doctorFailsWithoutBwrapWhenASandboxIsConfigured() throws {
        let s = try Setup()
        defer { removeTree(s.folder) }
        try FileSystem.makeDirectories(s.state)
        let config = s.folder + "/sandboxed.jsonc"
        try FileSystem.writeFile(config, Array(#"{ "agents": { "boxed": { "command": ["drover-mock-agent"], "sandbox": { "filesystem": "workdir" } } } }"#.utf8))
        // A PATH with env and sh but no bwrap.
        let result = try s.drover(["doctor", "--state-dir", s.state, "--config", config], path: s.bin)
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(lines.count == 1 && lines[0].contains("bwrap") && lines[0].contains("install bubblewrap"), "\(result.stdout)")
    }

    @Test func doctorComparesARunningDaemonsConfigWithTheClients() throws {
        let d = try DaemonFixture()
        let id = try d.launch("@result hi")
        _ = try d.ok(["wait", id, "--timeout", "20s"])
        let same = try d.run(["doctor"])
        let line = same.stdout.split(separator: "\n").first { $0.contains("daemon config") }
        #expect(line?.hasPrefix("ok") == true && line?.contains(d.config) == true, "\(same.stdout)")
        // Edited since the daemon loaded it: the digests differ.
        try FileSystem.writeFile(d.config, try FileSystem.read(d.config) + Array("\n// edited\n".utf8))
        let edited = try d.run(["doctor"])
        #expect(edited.status == 1)
        let failed = edited.stdout.split(separator: "\n").first { $0.contains("daemon config") }
        #expect(failed?.hasPrefix("FAIL") == true && failed?.contains("edited since it was loaded") == true
                && failed?.contains("drover reload --config \(d.config)") == true, "\(edited.stdout)")
    }

    @Test func eachSnippetParsesAsItsClientsFormat() throws {
        let program = "/opt/drover/bin/drover"
        let arguments = ["mcp", "--state-dir", "/home/a \"b\"/state"]
        let claude = McpClientSnippets.snippets(for: .claude, program: program, serverArguments: arguments, hookCommand: "/opt/drover/bin/drover hook claude")
        #expect(claude.count == 2)
        let servers = try parseObject(claude[0].text)
        #expect(servers["mcpServers"]?["drover"]?["command"] == .string(program))
        #expect(servers["mcpServers"]?["drover"]?["args"] == .array(arguments.map { .string($0) }))
        let hooks = try parseObject(claude[1].text)
        #expect(hooks["hooks"]?["Stop"] != nil)

        let opencode = try parseObject(McpClientSnippets.snippets(for: .opencode, program: program, serverArguments: arguments, hookCommand: "")[0].text)
        #expect(opencode["mcp"]?["drover"]?["type"] == "local")
        #expect(opencode["mcp"]?["drover"]?["command"] == .array(([program] + arguments).map { .string($0) }))
        #expect(opencode["mcp"]?["drover"]?["enabled"] == true)

        // TOML through Python's own reader (tomllib, Python 3.11).
        let toml = McpClientSnippets.snippets(for: .codex, program: program, serverArguments: arguments, hookCommand: "")[0].text
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/config.toml", Array(toml.utf8))
        let script = "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))"
        let pid = try spawnChild(["/usr/bin/python3", "-c", script, folder + "/config.toml"], output: .file(folder + "/out"), stderr: folder + "/err")
        #expect(waitForExit(pid) == 0, "\(readText(folder + "/err"))")
        let parsed = try parseObject(readText(folder + "/out"))
        #expect(parsed["mcp_servers"]?["drover"]?["command"] == .string(program))
        #expect(parsed["mcp_servers"]?["drover"]?["args"] == .array(arguments.map { .string($0) }))
    }
}

private extension JSONValue {
    subscript(key: String) -> JSONValue? { objectValue?[key] }
}

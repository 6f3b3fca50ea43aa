import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The roles `drover init` writes, run with the real Claude Code against the fake Anthropic
/// API: what each role's request offers the model.
@Suite(.serialized) struct InitRoleToolsTests {
    /// `drover init` with only `cli` (as `name`) on its PATH, in a home of its own: the config
    /// it wrote, that PATH's folder and the home.
    static func initWithOnly(_ cli: String, named name: String, in f: RealAgentFixture) throws -> (DroverConfig, bin: String, home: String) {
        let bin = f.folder + "/init-bin"
        let home = f.folder + "/init-home"
        try FileSystem.makeDirectories(bin)
        try FileSystem.makeDirectories(home)
        #expect(symlink(cli, bin + "/" + name) == 0)
        let initRun = try runDrover(["init"], in: f.folder, environment: ["-i", "HOME=\(home)", "PATH=\(bin):/usr/bin:/bin"])
        #expect(initRun.status == 0, "\(initRun.stderr)")
        return (try ConfigLoader.load(file: home + "/.config/drover/config.jsonc"), bin, home)
    }

    @Test func exploreOffersOnlyReadOnlyToolsAndLibrarianAWebTool() throws {
        let f = try RealAgentFixture()
        let api = try FakeAnthropic(folder: f.folder, script: #"[{"times": 4, "text": "Found it."}]"#)
        f.services.append(api.pid)
        f.keptAlive.append(api)
        let claude = try RealCLIs.claude()
        let (written, bin, home) = try Self.initWithOnly(claude, named: "claude", in: f)

        // Doctor reports the real CLI's version.
        try FileSystem.makeDirectories(f.folder + "/doctor-state")
        let doctor = try runDrover(["doctor", "--state-dir", f.folder + "/doctor-state"], in: f.folder,
                                   environment: ["-i", "HOME=\(home)", "PATH=\(bin):/usr/bin:/bin"])
        #expect(doctor.stdout.contains("agent explore CLI: \(bin)/claude (\(RealCLIs.claudeVersion) (Claude Code))"), "\(doctor.stdout)")

        // The roles' commands as written, run here without the sandbox and against the fake API.
        let environment = RealAgentFixture.envJSON(claudeEnvironment(home: f.home, api: api))
        let agents = try ["explore", "librarian"].map { role -> String in
            var command = try #require(written.agents[role]?.command)
            command.insert(contentsOf: ["--program", claude], at: 2)
            let argv = JSONWriter.string(.array(command.map { .string($0) }))
            return "\"\(role)\": { \"command\": \(argv), \"provider\": \"anthropic\", \"env\": \(environment), \"stablePolls\": 0 }"
        }
        try f.writeConfig(agents: agents.joined(separator: ",\n"), settings: "\"killGrace\": \"3s\", \"retries\": 0")
        let (outcome, tasks) = try f.run([("explore", "Find where sessions are stored."), ("librarian", "How is the MCP config documented?")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        #expect(tasks[1]?["status"] == "completed" && tasks[2]?["status"] == "completed", "\(tasks)")

        func toolNames(asked prompt: String) -> Set<String> {
            let request = api.requests().first { api.userText(ofRequest: $0).contains(prompt) }
            let tools = request?["body"]?.objectValue?["tools"]?.arrayValue ?? []
            return Set(tools.compactMap { $0.objectValue?["name"]?.stringValue })
        }
        let explore = toolNames(asked: "Find where sessions are stored.")
        // DeferredToolPlaceholder is Claude Code 2.1's stand-in for deferred (MCP) tools, not a tool the model can call.
        #expect(!explore.isEmpty && explore.isSubset(of: ["Read", "Grep", "Glob", "DeferredToolPlaceholder"]), "explore's tools: \(explore)")
        let librarian = toolNames(asked: "How is the MCP config documented?")
        #expect(librarian.contains("WebFetch") || librarian.contains { $0.lowercased().contains("web") }, "librarian's tools: \(librarian)")
        #expect(librarian.isDisjoint(with: ["Bash", "Edit", "Write", "NotebookEdit"]), "librarian's tools: \(librarian)")
        f.expectNoProcessLeft()
    }

    /// With only Codex's app-server found, each role's request carries its prompt as
    /// developer instructions and its reasoning effort; librarian's offers web search.
    @Test func codexRolesSendTheirInstructionsEffortAndWebSearch() throws {
        let f = try RealAgentFixture()
        let api = try FakeResponses(folder: f.folder, script: #"[{"times": 4, "text": "Found it."}]"#)
        f.services.append(api.pid)
        let codex = try RealCLIs.codexAppServer()
        let (written, _, _) = try Self.initWithOnly(codex, named: "codex-app-server", in: f)

        // The roles' commands as written, pointed at the fake API (Codex's config.toml is
        // never written); commands would run unsandboxed, but the fake asks for none.
        let environment = RealAgentFixture.envJSON(["HOME": f.home, "CODEX_HOME": f.home])
        let agents = try ["explore", "librarian"].map { role -> String in
            var command = try #require(written.agents[role]?.command)
            #expect(Array(command.prefix(4)) == ["drover-adapter", "codex-app-server", "--sandbox", "read-only"], "\(command)")
            command.insert(contentsOf: ["--program", codex], at: 2)
            command += CodexAppServerTests.codexConfigArguments(api: api)
            let argv = JSONWriter.string(.array(command.map { .string($0) }))
            return "\"\(role)\": { \"command\": \(argv), \"provider\": \"openai\", \"env\": \(environment), \"stablePolls\": 0 }"
        }
        // One at a time: two app-servers starting at once on a new CODEX_HOME race to create
        // its sqlite state ("failed to initialize sqlite state runtime").
        try f.writeConfig(agents: agents.joined(separator: ",\n"),
                          settings: "\"killGrace\": \"3s\", \"retries\": 0, \"providerConcurrency\": {\"openai\": 1}")
        let (outcome, tasks) = try f.run([("explore", "Find where sessions are stored."), ("librarian", "How is the MCP config documented?")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        #expect(tasks[1]?["status"] == "completed" && tasks[2]?["status"] == "completed", "\(tasks)")

        func body(asked prompt: String) -> JSONObject {
            api.requests().first { $0["last_input"]?.stringValue == prompt }?["body"]?.objectValue ?? [:]
        }
        func developerText(_ body: JSONObject) -> String {
            let items = body["input"]?.arrayValue ?? []
            return items.compactMap(\.objectValue).filter { $0["role"] == "developer" }.map { JSONWriter.string(.object($0)) }.joined()
        }
        // Codex offers every thread web search of its cache; web_search = "live" opens it to the web.
        func searchesTheWeb(_ body: JSONObject) -> Bool {
            (body["tools"]?.arrayValue ?? []).contains { $0.objectValue?["type"] == "web_search" && $0.objectValue?["external_web_access"] == true }
        }
        let explore = body(asked: "Find where sessions are stored.")
        let librarian = body(asked: "How is the MCP config documented?")
        #expect(developerText(explore).contains("You are explore"), "explore's developer input: \(developerText(explore))")
        #expect(developerText(librarian).contains("You are librarian"), "librarian's developer input: \(developerText(librarian))")
        #expect(explore["reasoning"]?.objectValue?["effort"] == "low", "\(String(describing: explore["reasoning"]))")
        #expect(librarian["reasoning"]?.objectValue?["effort"] == "medium", "\(String(describing: librarian["reasoning"]))")
        #expect(searchesTheWeb(librarian) && !searchesTheWeb(explore), "tools: \(String(describing: librarian["tools"])) / \(String(describing: explore["tools"]))")
        f.expectNoProcessLeft()
    }
}

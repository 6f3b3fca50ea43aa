@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

@Suite struct ConfigTests {
    func parse(_ text: String, file: String = "config.jsonc") throws(ConfigError) -> DroverConfig {
        try ConfigLoader.parse(Array(text.utf8), file: file)
    }

    @Test func readsTheSpecExample() throws {
        let config = try parse("""
            {
              "background_task": {
                "defaultConcurrency": 5,
                "providerConcurrency": { "anthropic": 3, "openai": 2 },
                "modelConcurrency": { "anthropic/claude-opus-4-5": 2, "gpt-5.2": 2 },
                "globalConcurrency": 0,
                "taskTtl": "30m", "staleTimeout": "3m", "killGrace": "3s",
              },
              "agents": {
                "explore": { "command": ["drover-mock-agent"], "provider": "anthropic", "model": "claude-haiku-4-5" },
                "sh": { "command": ["/bin/sh", "-c", "{prompt}"], "protocol": "raw", "provider": "local", "taskTtl": 5000 },
              },
              // other top-level keys are left alone
              "theme": "dark",
            }
            """)
        #expect(config.defaultConcurrency == 5)
        #expect(config.providerConcurrency == ["anthropic": 3, "openai": 2])
        #expect(config.modelConcurrency["gpt-5.2"] == 2)
        #expect(config.timers.resolved.taskTtl == 1_800_000)
        #expect(config.timers.resolved.staleTimeout == 180_000)
        #expect(config.timers.resolved.killGrace == 3000)
        #expect(config.agents["explore"]?.model == "claude-haiku-4-5")
        #expect(config.agents["sh"]?.workerProtocol == .raw)
        #expect(config.agents["sh"]?.timers.taskTtl == 5000)
        // Built-in agents stay unless redefined.
        #expect(config.agents["librarian"]?.command == ["drover-mock-agent"])
        #expect(config.agents["oracle"] != nil)
    }

    @Test func defaultsMatchTheSpec() {
        let timers = DroverConfig().timers.resolved
        #expect(timers == ResolvedTimers(taskTtl: 1_800_000, staleTimeout: 180_000, queuedTtl: 0, pollInterval: 2000,
                                         minStabilityTime: 10_000, stablePolls: 3, minIdleTime: 5000, killGrace: 3000))
        #expect(Set(DroverConfig().agents.keys) == ["explore", "librarian", "oracle", "claude", "opencode", "codex"])
    }

    @Test func theRealAgentsRunTheAdapterWithTheirCredentialsOnly() {
        let agents = DroverConfig().agents
        #expect(agents["claude"]?.command == ["drover-adapter", "claude"])
        #expect(agents["claude"]?.provider == "anthropic")
        #expect(agents["codex"]?.provider == "openai")
        #expect(agents["opencode"]?.provider == "opencode")
        #expect(agents["codex"]?.passEnv.contains("OPENAI_API_KEY") == true)
        #expect(agents["claude"]?.passEnv.contains("OPENAI_API_KEY") == false)
        #expect(["claude", "opencode", "codex"].allSatisfy { agents[$0]?.timers.stablePolls == 0 })
    }

    @Test func timersResolveTaskOverAgentOverConfig() {
        var config = TimerSettings()
        config.taskTtl = 1000
        config.killGrace = 50
        var agent = TimerSettings()
        agent.taskTtl = 2000
        agent.stablePolls = 0
        var task = TimerSettings()
        task.taskTtl = 3000
        let resolved = task.over(agent.over(config)).resolved
        #expect(resolved.taskTtl == 3000)
        #expect(resolved.stablePolls == 0)
        #expect(resolved.killGrace == 50)
        #expect(resolved.staleTimeout == 180_000)
    }

    func expectError(_ text: String, file: String = "config.jsonc", line: Int?, keyPath: String?, mentions: String) {
        do {
            _ = try parse(text, file: file)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.file == file)
            #expect(error.line == line, "\(error)")
            #expect(error.keyPath == keyPath, "\(error)")
            #expect(error.description.contains(mentions), "\(error)")
        }
    }

    @Test func errorsNameFileLineAndKeyPath() {
        expectError("{\n \"background_task\": {\n  \"taskTtl\": \"soon\"\n }\n}", line: 3, keyPath: "background_task.taskTtl", mentions: "duration")
        expectError("{\n \"background_task\": {\n  \"taskTTL\": 5\n }\n}", line: 3, keyPath: "background_task.taskTTL", mentions: "unknown key")
        expectError("{\"background_task\": {\"providerConcurrency\": {\"openai\": -1}}}", line: 1,
                    keyPath: "background_task.providerConcurrency.openai", mentions: "whole number")
        expectError("{\n\"agents\": {\n \"x\": {\n  \"command\": [\"a\"],\n  \"protocol\": \"grpc\"\n }\n}\n}", line: 5,
                    keyPath: "agents.x.protocol", mentions: "\"framed\" or \"raw\"")
        expectError("{\"agents\": {\"x\": {\"command\": []}}}", line: 1, keyPath: "agents.x.command", mentions: "must not be empty")
        expectError("{\"agents\": {\"x\": {\"provider\": \"p\"}}}", line: 1, keyPath: "agents.x", mentions: "command")
        expectError("{\"agents\": {\"x\": {\"command\": [\"a\"], \"limits\": {\"memry\": 1}}}}", line: 1,
                    keyPath: "agents.x.limits.memry", mentions: "unknown key")
        expectError("{\"agents\": {\"x\": {\"command\": [\"a\", 3]}}}", line: 1, keyPath: "agents.x.command.1", mentions: "expected a string")
        expectError("{\n  \"a\": 1,\n  oops\n}", line: 3, keyPath: nil, mentions: "column")
        expectError("[1]", line: 1, keyPath: nil, mentions: "object")
    }

    @Test func durationsAsNumbersOrStrings() throws {
        let config = try parse(#"{"background_task": {"taskTtl": 90000, "staleTimeout": "90s", "minIdleTime": "1500ms", "pollInterval": "0.5s", "stablePolls": 0}}"#)
        let timers = config.timers.resolved
        #expect(timers.taskTtl == 90_000 && timers.staleTimeout == 90_000 && timers.minIdleTime == 1500)
        #expect(timers.pollInterval == 500 && timers.stablePolls == 0)
    }

    @Test func ohMyOpencodeFileIsReadForItsBackgroundTaskOnly() throws {
        let config = try parse("""
            {
              "agents": { "explore": { "model": "something else entirely" } },
              "background_task": { "providerConcurrency": {"anthropic": 2}, "staleTimeoutMs": 60000, "taskTtlMs": 120000, "somethingNew": true },
            }
            """, file: "/home/u/.config/opencode/oh-my-opencode.json")
        #expect(config.providerConcurrency == ["anthropic": 2])
        #expect(config.timers.staleTimeout == 60_000)
        #expect(config.timers.taskTtl == 120_000)
        #expect(config.agents["explore"]?.command == ["drover-mock-agent"])
        #expect(config.warnings.count == 1)
        #expect(config.warnings.first?.contains("background_task.somethingNew") == true)
    }

    @Test func lookupOrder() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let explicit = folder + "/explicit.jsonc"
        let fromEnv = folder + "/env.jsonc"
        try FileSystem.makeDirectories(folder + "/xdg/drover")
        try FileSystem.writeFile(explicit, Array(#"{"background_task": {"defaultConcurrency": 1}}"#.utf8))
        try FileSystem.writeFile(fromEnv, Array(#"{"background_task": {"defaultConcurrency": 2}}"#.utf8))
        try FileSystem.writeFile(folder + "/xdg/drover/config.jsonc", Array(#"{"background_task": {"defaultConcurrency": 3}}"#.utf8))
        let env = ["DROVER_CONFIG": fromEnv, "XDG_CONFIG_HOME": folder + "/xdg", "HOME": folder]
        #expect(try ConfigLoader.load(explicitPath: explicit, environment: env).defaultConcurrency == 1)
        #expect(try ConfigLoader.load(explicitPath: nil, environment: env).defaultConcurrency == 2)
        #expect(try ConfigLoader.load(explicitPath: nil, environment: ["XDG_CONFIG_HOME": folder + "/xdg"]).defaultConcurrency == 3)
        let builtIn = try ConfigLoader.load(explicitPath: nil, environment: ["HOME": folder + "/nobody"])
        #expect(builtIn.defaultConcurrency == nil && builtIn.source == nil)
        #expect(throws: ConfigError.self) { _ = try ConfigLoader.load(explicitPath: folder + "/missing.jsonc", environment: env) }
    }
}

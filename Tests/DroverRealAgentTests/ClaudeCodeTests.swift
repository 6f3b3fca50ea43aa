import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The real Claude Code CLI (2.1.332) run by drover-adapter under drover, against the fake
/// Anthropic API: what its real stream gives drover's tasks.
@Suite(.serialized) struct ClaudeCodeTests {
    /// A fixture with the fake API and one agent, `claude`, running the real CLI.
    static func setUp(script: String, adapterFlags: String = "", settings: String? = nil) throws -> (RealAgentFixture, FakeAnthropic) {
        let f = try RealAgentFixture()
        let api = try FakeAnthropic(folder: f.folder, script: script)
        f.services.append(api.pid)
        let claude = try RealCLIs.claude()
        let environment = RealAgentFixture.envJSON(claudeEnvironment(home: f.home, api: api))
        let flags = adapterFlags.isEmpty ? "" : adapterFlags + ", "
        try f.writeConfig(agents: """
            "claude": {
              "command": ["drover-adapter", "claude", "--program", "\(claude)", "--grace", "500ms", \(flags)"--", "--tools", "Bash,Read"],
              "provider": "anthropic", "env": \(environment), "stablePolls": 0
            }
            """, settings: settings ?? "\"killGrace\": \"3s\", \"retries\": 0")
        return (f, api)
    }

    @Test func aPlainTurnIsTheTaskResultWithItsUsageAndCost() throws {
        let (f, api) = try Self.setUp(script: #"[{"text": "The answer is 42.", "usage": {"input_tokens": 100, "output_tokens": 20}}]"#)
        let (outcome, tasks) = try f.run([("claude", "What is the answer?")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"]?.stringValue == "completed", "\(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("The answer is 42."))
        let usage = try #require(task["usage"]?.objectValue)
        #expect(usage["input_tokens"] == 100 && usage["output_tokens"] == 20, "\(usage)")
        #expect((usage["cost_usd"]?.numberValue ?? 0) > 0, "the CLI's own cost is the task's: \(usage)")
        let requests = api.requests()
        #expect(requests.count == 1 && requests.first?["path"]?.stringValue == "/v1/messages?beta=true")
        #expect(api.userText(ofRequest: requests[0]).contains("What is the answer?"))
        f.expectNoProcessLeft()
    }
}

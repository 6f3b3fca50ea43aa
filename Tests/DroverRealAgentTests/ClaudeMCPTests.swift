import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The real Claude Code CLI (2.1.332) as the MCP client of `drover mcp`, with `drover hook
/// claude` as its hooks, against the fake Anthropic API: the model learns that a task it
/// delegated ended without ever asking (Claude Code drops MCP notifications), and cannot
/// stop while it runs. The MCP config and the hook settings are the ones drover prints.
@Suite(.serialized) struct ClaudeMCPTests {
    /// A fixture whose config has a mock agent, its daemon running, the fake API, and the
    /// files `--mcp-config` and `--settings` take.
    static func setUp(script: (_ drover: (String) -> String) -> String, hookArguments: [String] = [], hooks: Bool = true) throws -> (RealAgentFixture, FakeAnthropic) {
        let f = try RealAgentFixture()
        try f.writeConfig(agents: #""mock": {"command": ["drover-mock-agent"], "provider": "mock", "description": "a scripted mock agent"}"#)
        let api = try FakeAnthropic(folder: f.folder, script: script { words in "\(droverExecutable) \(words) --state-dir \(f.state) --config \(f.config)" })
        f.services.append(api.pid)
        f.keptAlive.append(api)
        _ = try f.ok(["status"])  // the daemon, started (and later shut down) by the fixture
        try FileSystem.writeFile(f.folder + "/mcp.json", Array(try f.ok(["mcp", "--print-config", "claude"]).utf8))
        let settings = hooks ? try f.ok(["hook", "claude", "--print-settings"] + hookArguments) : "{}"
        try FileSystem.writeFile(f.folder + "/claude-settings.json", Array(settings.utf8))
        return (f, api)
    }

    /// `claude -p PROMPT` with drover's MCP server and hooks; its exit status and stream.
    static func runClaude(_ f: RealAgentFixture, _ api: FakeAnthropic, prompt: String) throws -> (status: Int32, stream: [JSONObject]) {
        var environment = claudeEnvironment(home: f.home, api: api)
        environment["PATH"] = ProcessEnvironment.current()["PATH"] ?? "/usr/bin:/bin"
        environment["LANG"] = "C.UTF-8"
        // Root may bypass permissions only in a sandbox: this is one.
        environment["IS_SANDBOX"] = "1"
        let command = ["/usr/bin/env", "-i"] + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [
            try RealCLIs.claude(), "-p", prompt, "--mcp-config", f.folder + "/mcp.json", "--strict-mcp-config",
            "--settings", f.folder + "/claude-settings.json", "--output-format", "stream-json", "--verbose",
            "--dangerously-skip-permissions",
        ]
        let out = f.folder + "/claude.out"
        let pid = try spawnChild(command, output: .file(out), stderr: f.folder + "/claude.err", in: f.folder)
        guard let status = exitStatus(pid, withinMs: 120_000) else {
            throw TestFailure("claude did not exit within 2 minutes: \(readText(f.folder + "/claude.err"))")
        }
        return (status, (try? readLines(out)) ?? [])
    }

    static func exitStatus(_ pid: pid_t, withinMs ms: Int) -> Int32? {
        let deadline = Clock.wallMs() + Int64(ms)
        var status: Int32 = 0
        while Clock.wallMs() < deadline {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { return (status >> 8) & 0xFF }
            if done < 0 && errno != EINTR { return nil }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        _ = waitForExit(pid)
        return nil
    }

    /// Every text a request's messages carry, whatever the role (Claude Code sends hook
    /// context as a "system" message), strings unescaped.
    static func texts(ofRequest request: JSONObject) -> String {
        func collect(_ value: JSONValue, into out: inout [String]) {
            switch value {
            case .string(let text): out.append(text)
            case .array(let items): for item in items { collect(item, into: &out) }
            case .object(let object): for (_, member) in object.members { collect(member, into: &out) }
            default: break
            }
        }
        var out: [String] = []
        collect(request["body"]?.objectValue?["messages"] ?? .null, into: &out)
        return out.joined(separator: "\n")
    }

    /// The tools the model called in a request's messages, by name.
    static func toolCalls(inRequest request: JSONObject) -> [String] {
        (request["body"]?.objectValue?["messages"]?.arrayValue ?? []).flatMap { message -> [String] in
            (message.objectValue?["content"]?.arrayValue ?? []).compactMap { block in
                block.objectValue?["type"] == "tool_use" ? block.objectValue?["name"]?.stringValue : nil
            }
        }
    }

    /// The one task of the fixture's daemon.
    static func onlyTask(_ f: RealAgentFixture) throws -> JSONObject {
        let tasks = try JSONParser.parse(try f.ok(["status", "--json"])).value.arrayValue ?? []
        #expect(tasks.count == 1, "\(tasks)")
        return try #require(tasks.first?.objectValue)
    }

    @Test func theModelLearnsOfTheEndWithoutAskingForIt() throws {
        let (f, api) = try Self.setUp(script: { drover in """
            [
              {"match": "Delegate the mock job", "tool_use": {"name": "ToolSearch", "input": {"query": "select:mcp__drover__delegate_task", "max_results": 5}}},
              {"match": "Tool loaded.", "times": 1, "tool_use": {"name": "mcp__drover__delegate_task", "input": {"description": "quick mock job", "prompt": "@sleep 1s\\n@result the mock is done", "agent": "mock"}}},
              {"match": "Background task launched successfully", "tool_use": {"name": "Bash", "input": {"command": "sleep 1; \(drover("wait --all --timeout 60s"))", "description": "wait a little"}}},
              {"match": "", "text": "Finished, without reading the result."}
            ]
            """ })
        let (status, stream) = try Self.runClaude(f, api, prompt: "Delegate the mock job, then wait a little.")
        #expect(status == 0, "\(readText(f.folder + "/claude.err"))")
        let result = try #require(stream.last { $0["type"] == "result" })
        #expect(result["is_error"] == false && result["result"] == "Finished, without reading the result.", "\(result)")

        let task = try Self.onlyTask(f)
        let taskID = try #require(task["id"]?.stringValue)
        #expect(task["status"] == "completed" && task["agent"] == "mock", "\(task)")
        let requests = api.requests()
        #expect(requests.count == 4, "\(requests.map { Self.texts(ofRequest: $0).suffix(300) })")
        // The launch answer promises only what comes.
        let launch = Self.texts(ofRequest: requests[min(2, requests.count - 1)])
        #expect(launch.contains("Task ID: \(taskID)") && launch.contains("When it ends, the next answer of any drover tool begins with its status"), "\(launch.suffix(800))")
        // After the Bash call, the hook's context is in the conversation.
        let last = Self.texts(ofRequest: try #require(requests.last))
        #expect(last.contains("PostToolUse:Bash hook additional context: drover: background tasks of this Claude session ended:"), "\(last.suffix(800))")
        #expect(last.contains("- \(taskID) \"quick mock job\" (agent mock) ended: completed. Read its result with background_output, task_id \"\(taskID)\"."), "\(last.suffix(800))")
        // ...though the model never asked for it.
        for request in requests { #expect(!Self.toolCalls(inRequest: request).contains("mcp__drover__background_output")) }
        #expect(Self.toolCalls(inRequest: try #require(requests.last)) == ["ToolSearch", "mcp__drover__delegate_task", "Bash"])
        f.expectNoProcessLeft()
    }

    /// Without the hook, in any client: the next answer of a drover tool begins with the end.
    @Test func withoutTheHookTheNextToolAnswerBeginsWithTheEnd() throws {
        let (f, api) = try Self.setUp(script: { drover in """
            [
              {"match": "Delegate two jobs", "tool_use": {"name": "ToolSearch", "input": {"query": "select:mcp__drover__delegate_task", "max_results": 5}}},
              {"match": "Tool loaded.", "times": 1, "tool_use": {"name": "mcp__drover__delegate_task", "input": {"description": "first mock job", "prompt": "@sleep 500ms\\n@result the first is done", "agent": "mock"}}},
              {"match": "Task ID: bg_", "times": 1, "tool_use": {"name": "Bash", "input": {"command": "\(drover("wait --all --timeout 60s"))", "description": "let it end"}}},
              {"match": "", "times": 1, "tool_use": {"name": "mcp__drover__delegate_task", "input": {"description": "second mock job", "prompt": "@result the second is done", "agent": "mock"}}},
              {"match": "", "text": "Both launched."}
            ]
            """ }, hooks: false)
        let (status, _) = try Self.runClaude(f, api, prompt: "Delegate two jobs.")
        #expect(status == 0, "\(readText(f.folder + "/claude.err"))")
        let tasks = try JSONParser.parse(try f.ok(["status", "--json"])).value.arrayValue?.compactMap(\.objectValue) ?? []
        let first = try #require(tasks.first { $0["description"] == "first mock job" }?["id"]?.stringValue, "\(tasks)")
        let second = try #require(tasks.first { $0["description"] == "second mock job" }?["id"]?.stringValue, "\(tasks)")
        let requests = api.requests()
        #expect(requests.count == 5, "\(requests.map { Self.texts(ofRequest: $0).suffix(300) })")
        // The second launch's answer, as the model received it in the last request.
        let last = Self.texts(ofRequest: try #require(requests.last))
        #expect(last.contains("""
            Background tasks that ended since drover's previous answer:
            - \(first) "first mock job" (agent mock) ended: completed. Read its result with background_output, task_id "\(first)".

            ---

            Background task launched successfully.

            Task ID: \(second)
            """), "\(last.suffix(1200))")
        for request in requests { #expect(!Self.toolCalls(inRequest: request).contains("mcp__drover__background_output")) }
        _ = try f.ok(["wait", "--all", "--timeout", "60s"])
        f.expectNoProcessLeft()
    }

    @Test func theModelCannotStopWhileItsTaskRuns() throws {
        let (f, api) = try Self.setUp(script: { drover in """
            [
              {"match": "Delegate the slow job", "tool_use": {"name": "ToolSearch", "input": {"query": "delegate subagent parallel", "max_results": 5}}},
              {"match": "Tool loaded.", "times": 1, "tool_use": {"name": "mcp__drover__delegate_task", "input": {"description": "slow mock job", "prompt": "@sleep 4s\\n@result the slow mock is done", "agent": "mock"}}},
              {"match": "Background task launched successfully", "text": "I am done."},
              {"match": "Stop hook feedback", "times": 1, "tool_use": {"name": "Bash", "input": {"command": "\(drover("wait --all --timeout 60s"))", "description": "wait for the job"}}},
              {"match": "", "text": "Now I am done."}
            ]
            """ })
        let (status, stream) = try Self.runClaude(f, api, prompt: "Delegate the slow job and stop.")
        #expect(status == 0, "\(readText(f.folder + "/claude.err"))")
        let result = try #require(stream.last { $0["type"] == "result" })
        #expect(result["is_error"] == false && result["result"] == "Now I am done.", "\(result)")

        let taskID = try #require(try Self.onlyTask(f)["id"]?.stringValue)
        let requests = api.requests()
        #expect(requests.count == 5, "\(requests.map { Self.texts(ofRequest: $0).suffix(300) })")
        guard requests.count == 5 else { return }
        // Found by words alone: the description's search line.
        #expect(Self.texts(ofRequest: requests[1]).contains("mcp__drover__delegate_task"))
        // The model's "I am done." was refused with the task named and how to wait for it.
        let refused = Self.texts(ofRequest: requests[3])
        #expect(refused.contains("Stop hook feedback:\ndrover: background tasks of this Claude session have not ended yet:\n- \(taskID) \"slow mock job\" (agent mock): running"), "\(refused.suffix(1200))")
        #expect(refused.contains("background_output with task_id \"\(taskID)\" and block: true"), "\(refused.suffix(1200))")
        // Once it ended, the hook said so after the Bash call, and the session could stop.
        let last = Self.texts(ofRequest: requests[4])
        #expect(last.contains("- \(taskID) \"slow mock job\" (agent mock) ended: completed."), "\(last.suffix(800))")
        f.expectNoProcessLeft()
    }

    @Test func aSessionStopsOnceTheHookHasAskedEnough() throws {
        let (f, api) = try Self.setUp(script: { _ in """
            [
              {"match": "Delegate a job that never ends", "tool_use": {"name": "ToolSearch", "input": {"query": "select:mcp__drover__delegate_task", "max_results": 5}}},
              {"match": "Tool loaded.", "times": 1, "tool_use": {"name": "mcp__drover__delegate_task", "input": {"description": "endless job", "prompt": "@hang", "agent": "mock"}}},
              {"match": "", "text": "Done."}
            ]
            """ }, hookArguments: ["--stop-blocks", "2"])
        let (status, _) = try Self.runClaude(f, api, prompt: "Delegate a job that never ends.")
        #expect(status == 0, "\(readText(f.folder + "/claude.err"))")
        let task = try Self.onlyTask(f)
        let taskID = try #require(task["id"]?.stringValue)
        #expect(task["status"] == "running")
        // Two refusals, then the stop went through.
        let requests = api.requests()
        #expect(requests.count == 5, "\(requests.map { Self.texts(ofRequest: $0).suffix(300) })")
        let refusals = requests.filter { Self.texts(ofRequest: $0).contains("Stop hook feedback:\ndrover:") }
        #expect(refusals.count == 2)
        let lastWord = Self.texts(ofRequest: try #require(requests.last))
        #expect(lastWord.contains(taskID) && lastWord.contains("drover will not keep this session from stopping again until the next prompt"), "\(lastWord.suffix(800))")
        _ = try f.ok(["cancel", "--all"])
        f.expectNoProcessLeft()
    }
}

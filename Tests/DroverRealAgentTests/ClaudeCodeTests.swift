import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The real Claude Code CLI (2.1.332) run by drover-adapter under drover, against the fake
/// Anthropic API: what its real stream gives drover's tasks.
@Suite(.serialized) struct ClaudeCodeTests {
    /// A fixture with the fake API and one agent, `claude`, running the real CLI.
    /// `@FOLDER@` in the script is the fixture's folder.
    /// Root may bypass Claude Code's permission prompts only in a sandbox (IS_SANDBOX=1):
    /// these tests' folder is one, and a tool call must run without asking.
    static func setUp(script: String, adapterFlags: String = "", settings: String? = nil) throws -> (RealAgentFixture, FakeAnthropic) {
        let f = try RealAgentFixture()
        let api = try FakeAnthropic(folder: f.folder, script: script.replacing("@FOLDER@", with: f.folder))
        f.services.append(api.pid)
        f.keptAlive.append(api)
        let claude = try RealCLIs.claude()
        var cliEnvironment = claudeEnvironment(home: f.home, api: api)
        cliEnvironment["IS_SANDBOX"] = "1"
        let environment = RealAgentFixture.envJSON(cliEnvironment)
        let flags = adapterFlags.isEmpty ? "" : adapterFlags + ", "
        try f.writeConfig(agents: """
            "claude": {
              "command": ["drover-adapter", "claude", "--program", "\(claude)", "--grace", "500ms", \(flags)"--", "--tools", "Bash,Read", "--dangerously-skip-permissions"],
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


    /// The CLI really runs its Bash tool, and the tool's output reaches the model.
    @Test func aToolTurnRunsTheCLIsOwnTool() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Write the file", "tool_use": {"name": "Bash", "input": {"command": "echo written-by-claude > @FOLDER@/tool-ran.txt && cat @FOLDER@/tool-ran.txt", "description": "write it"}}},
             {"match": "written-by-claude", "text": "The file holds written-by-claude."}]
            """)
        let (outcome, tasks) = try f.run([("claude", "Write the file.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        #expect(readText(f.folder + "/tool-ran.txt") == "written-by-claude\n")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("The file holds written-by-claude."))
        let progress = f.transcript(id, root: f.results).filter { $0["type"] == "progress" }
        #expect(progress.first?["tool"] == "Bash", "\(progress)")
        let requests = api.requests()
        #expect(requests.count == 2 && api.userText(ofRequest: requests[1]).contains("written-by-claude"))
        f.expectNoProcessLeft()
    }

    /// A 429 the CLI's one retry does not get past fails the attempt as a rate limit; drover
    /// waits out retry-after for the whole provider and runs the task again, which succeeds.
    @Test func aRateLimitPastTheCLIsRetryIsDroversToRetry() throws {
        let (f, api) = try Self.setUp(script: """
            [{"times": 2, "status": 429, "retry_after": 1},
             {"text": "Answered after the limit.", "usage": {"input_tokens": 40, "output_tokens": 6}}]
            """, settings: "\"killGrace\": \"3s\", \"retries\": 1")
        let (outcome, tasks) = try f.run([("claude", "Say something.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed" && task["attempt"] == 2, "\(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("Answered after the limit."))
        // The CLI tried twice (CLAUDE_CODE_MAX_RETRIES=1), not eleven times over minutes.
        let requests = api.requests()
        #expect(requests.count == 3, "\(requests.count) requests")
        let limits = f.transcript(id, root: f.results).filter { $0["type"] == "rate_limit" }
        #expect(limits.count >= 2, "the CLI's retry and its failed result each report the limit: \(limits)")
        #expect(limits.first?["message"]?.stringValue?.contains("attempt 1 of 1: rate_limit (HTTP 429)") == true, "\(limits)")
        if requests.count == 3, let second = requests[1]["time"]?.numberValue, let third = requests[2]["time"]?.numberValue {
            #expect(third - second >= 0.9, "drover waited out retry-after before the next attempt")
        }
        f.expectNoProcessLeft()
    }

    /// A server error that persists: the task ends in error, keeps the usage of what it had
    /// done, and the CLI's own "API Error" text is no assistant message.
    @Test func aPermanentFailureKeepsItsUsageAndNoSyntheticMessage() throws {
        let (f, _) = try Self.setUp(script: """
            [{"match": "Run it", "tool_use": {"name": "Bash", "input": {"command": "echo ran", "description": "run it"}}, "usage": {"input_tokens": 100, "output_tokens": 20}},
             {"status": 500}]
            """)
        let (_, tasks) = try f.run([("claude", "Run it.")])
        let task = try #require(tasks[1])
        #expect(task["status"] == "error" && task["reason"] == "worker_error", "\(task)")
        #expect(task["error"]?.stringValue?.hasPrefix("claude failed (HTTP 500): API Error: 500") == true, "\(task)")
        let usage = try #require(task["usage"]?.objectValue)
        #expect(usage["input_tokens"] == 100 && usage["output_tokens"] == 20 && usage["cost_usd"] == 0.0008, "\(usage)")
        let id = try #require(task["id"]?.stringValue)
        let messages = f.transcript(id, root: f.results).filter { $0["type"] == "message" && $0["role"] == "assistant" }
        #expect(!messages.contains { $0["text"]?.stringValue?.contains("API Error") == true }, "\(messages)")
        f.expectNoProcessLeft()
    }

    /// A model that streams slowly, quiet for longer than the stale timeout: the adapter's
    /// heartbeats keep the task alive until the answer.
    @Test func aSlowStreamOutlivesTheStaleTimeout() throws {
        let (f, _) = try Self.setUp(script: #"[{"text": "A slow but complete answer.", "stall_ms": 2500}]"#,
                                    adapterFlags: #""--heartbeat", "200ms""#,
                                    settings: "\"killGrace\": \"3s\", \"retries\": 0, \"staleTimeout\": \"1s\"")
        let (outcome, tasks) = try f.run([("claude", "Take your time.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        #expect((task["duration_ms"]?.numberValue ?? 0) >= 2500, "the stall was real: \(task)")
        f.expectNoProcessLeft()
    }

    /// `drover continue` resumes the CLI's own conversation: the model is sent the earlier turn.
    @Test func continueResumesTheConversationWithItsEarlierTurns() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Remember the word apricot", "text": "I will remember it."},
             {"match": "Which word", "text": "The word was apricot."}]
            """)
        let first = try f.ok(["launch", "--agent", "claude", "--prompt", "Remember the word apricot."])
        _ = try f.ok(["output", first, "--wait", "--timeout", "60s"])
        let session = try #require(try f.task(first)["session_id"]?.stringValue)
        let answer = try f.ok(["continue", session, "--prompt", "Which word did I give you?", "--wait"])
        #expect(answer.contains("The word was apricot."), "\(answer)")
        let requests = api.requests()
        #expect(requests.count == 2)
        let resumed = api.userText(ofRequest: try #require(requests.last))
        #expect(resumed.contains("Remember the word apricot.") && resumed.contains("Which word did I give you?"), "\(resumed.suffix(600))")
        let messages = try #require(requests.last?["body"]?.objectValue?["messages"]?.arrayValue)
        #expect(messages.contains { JSONWriter.string($0).contains("I will remember it.") }, "the earlier answer is sent back")
        f.expectNoProcessLeft()
    }

    /// A prompt sent to a session while its turn runs becomes the next turn of the same
    /// conversation; the task's result is that turn's answer.
    @Test func aFollowUpPromptToARunningSessionIsItsNextTurn() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Start slowly", "tool_use": {"name": "Bash", "input": {"command": "sleep 2; echo slept", "description": "wait"}}},
             {"match": "slept", "text": "First turn done."},
             {"match": "And a second thing", "text": "Second turn done."}]
            """)
        let id = try f.ok(["launch", "--agent", "claude", "--prompt", "Start slowly."])
        #expect(eventually(withinMs: 20_000) { api.requests().count == 1 })
        let session = try #require(try f.task(id)["session_id"]?.stringValue)
        #expect(try f.ok(["continue", session, "--prompt", "And a second thing."]) == id, "a running session takes the prompt")
        let output = try f.ok(["output", id, "--wait", "--timeout", "60s"])
        #expect(output.contains("Second turn done."), "\(output)")
        let task = try f.task(id)
        #expect(task["status"] == "completed" && task["result_data"]?.objectValue?["turns"] == 2, "\(task)")
        let last = api.userText(ofRequest: try #require(api.requests().last))
        #expect(last.contains("Start slowly.") && last.contains("And a second thing."), "\(last.suffix(600))")
        f.expectNoProcessLeft()
    }

    /// Cancel while the CLI's Bash tool runs a long command: the CLI, its shell and the
    /// command are gone, and the task does not read as a clean exit.
    @Test func cancelDuringALongToolCommandLeavesNothing() throws {
        let (f, _) = try Self.setUp(script: """
            [{"match": "Wait a minute", "tool_use": {"name": "Bash", "input": {"command": "echo waiting; sleep 61; echo waited", "description": "a long wait"}}}]
            """)
        let id = try f.ok(["launch", "--agent", "claude", "--prompt", "Wait a minute."])
        #expect(eventually(withinMs: 20_000) { f.processesMentioningFolder().contains { $0.command.hasPrefix("sleep 61") } },
                "\(f.processesMentioningFolder())")
        _ = try f.ok(["cancel", id])
        let task = try f.task(id)
        #expect(task["status"] == "cancelled", "\(task)")
        #expect(task["exit_code"] == 143, "cancelled: the adapter leaves as a program ended by SIGTERM, never as a clean exit: \(task)")
        f.expectNoProcessLeft()
    }

    /// The task's ttl ends a turn that runs too long, tool command included.
    @Test func theTTLEndsALongTurnAndLeavesNothing() throws {
        let (f, _) = try Self.setUp(script: """
            [{"match": "Wait a minute", "tool_use": {"name": "Bash", "input": {"command": "echo waiting; sleep 62; echo waited", "description": "a long wait"}}}]
            """, settings: "\"killGrace\": \"3s\", \"retries\": 0, \"taskTtl\": \"4s\"")
        let (_, tasks) = try f.run([("claude", "Wait a minute.")])
        let task = try #require(tasks[1])
        #expect(task["status"] == "cancelled" && task["reason"] == "ttl", "\(task)")
        #expect((task["duration_ms"]?.numberValue ?? 0) < 20_000, "\(task)")
        f.expectNoProcessLeft()
    }

    /// A Bash call with run_in_background: the CLI answers, then answers again when the
    /// command ends. drover waits for that (no linger kill) and the task's result is the
    /// second answer.
    @Test func aBackgroundCommandsLaterAnswerIsTheResult() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Start the job", "tool_use": {"name": "Bash", "input": {"command": "sleep 3; echo bg-done", "description": "background job", "run_in_background": true}}},
             {"match": "task-notification", "text": "The background job finished: bg-done."},
             {"match": "", "text": "Started it; I will report when it ends."}]
            """, adapterFlags: #""--linger", "1s""#)
        let (outcome, tasks) = try f.run([("claude", "Start the job.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("The background job finished: bg-done."), "\(f.resultText(id, root: f.results))")
        #expect(task["result_data"]?.objectValue?["answers"] == 2, "\(task)")
        let messages = f.transcript(id, root: f.results).filter { $0["type"] == "message" && $0["role"] == "assistant" }.compactMap { $0["text"]?.stringValue }
        #expect(messages == ["Started it; I will report when it ends.", "The background job finished: bg-done."], "each answer recorded: \(messages)")
        #expect(api.requests().count == 3)
        f.expectNoProcessLeft()
    }
}

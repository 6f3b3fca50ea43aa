import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The real Codex app-server (0.159.2) run by `drover-adapter codex-app-server` under drover,
/// against the fake Responses API: what its JSON-RPC conversation gives drover's tasks.
/// Commands run with `--sandbox danger-full-access`: Codex's Linux sandbox needs bubblewrap,
/// which this kind of machine does not have.
@Suite(.serialized) struct CodexAppServerTests {
    /// A fixture with the fake API and one agent, `codex`, running the real app-server.
    static func setUp(script: String, adapterFlags: [String] = [], settings: String? = nil) throws -> (RealAgentFixture, FakeResponses) {
        let f = try RealAgentFixture()
        let api = try FakeResponses(folder: f.folder, script: script)
        f.services.append(api.pid)
        let command = ["drover-adapter", "codex-app-server", "--program", try codexProgram(f), "--grace", "500ms",
                       "--sandbox", "danger-full-access"] + adapterFlags + ["--"] + codexConfigArguments(api: api)
        let environment = RealAgentFixture.envJSON(["HOME": f.home, "CODEX_HOME": f.home])
        try f.writeConfig(agents: """
            "codex": {
              "command": \(JSONWriter.string(.array(command.map { .string($0) }))),
              "provider": "openai", "env": \(environment), "stablePolls": 0
            }
            """, settings: settings ?? "\"killGrace\": \"3s\", \"retries\": 0")
        return (f, api)
    }

    /// `-c` overrides that point Codex at the fake (its config.toml is never written) and keep
    /// it from calling anywhere else. No retries of its own: a failure reaches drover at once.
    static func codexConfigArguments(api: FakeResponses) -> [String] {
        [
            #"model="fake-model""#, #"model_provider="fake""#, #"model_providers.fake.name="fake""#,
            #"model_providers.fake.base_url="\#(api.baseURL)/v1""#, #"model_providers.fake.wire_api="responses""#,
            "model_providers.fake.requires_openai_auth=false", "model_providers.fake.request_max_retries=0",
            "model_providers.fake.stream_max_retries=0", "features.plugins=false",
        ].flatMap { ["-c", $0] }
    }

    /// The real binary; with DROVER_RECORD_CODEX_APP_SERVER=FOLDER, a wrapper that also
    /// copies everything the server writes to FOLDER (how the adapter tests' fixtures under
    /// streams/codex-app-server were recorded).
    static func codexProgram(_ f: RealAgentFixture) throws -> String {
        let real = try RealCLIs.codexAppServer()
        guard let folder = ProcessEnvironment.current()["DROVER_RECORD_CODEX_APP_SERVER"], !folder.isEmpty else { return real }
        let wrapper = f.folder + "/record-codex-app-server"
        let name = FileSystem.basename(of: f.folder)
        try FileSystem.writeFile(wrapper, Array("#!/bin/sh\n'\(real)' \"$@\" | tee -a '\(folder)/\(name).jsonl'\n".utf8))
        chmod(wrapper, 0o755)
        return wrapper
    }

    @Test func aPlainTurnIsTheTaskResultWithItsUsage() throws {
        let (f, api) = try Self.setUp(script: """
            [{"text": "The answer is 42.", "usage": {"input_tokens": 100, "output_tokens": 20, "cached_tokens": 30},
              "headers": {"x-codex-primary-used-percent": "42", "x-codex-primary-window-minutes": "300", "x-codex-primary-reset-at": "1900000000"}}]
            """)
        let (outcome, tasks) = try f.run([("codex", "What is the answer?")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("The answer is 42."))
        // Drover's terms: input without the cached tokens, which are cache reads.
        let usage = try #require(task["usage"]?.objectValue)
        #expect(usage["input_tokens"] == 70 && usage["cache_read_tokens"] == 30 && usage["output_tokens"] == 20, "\(usage)")
        let data = try #require(task["result_data"]?.objectValue)
        #expect(data["cli"] == "codex-app-server" && data["turns"] == 1, "\(data)")
        let transcript = f.transcript(id, root: f.results)
        let session = try #require(transcript.first { $0["type"] == "session" })
        #expect(session["cli"] == "codex-app-server" && session["cli_session_id"] == data["cli_session_id"], "\(session)")
        #expect(transcript.filter { $0["type"] == "usage" }.count == 1, "\(transcript)")
        #expect(!transcript.contains { $0["type"] == "rate_limit" }, "a window 42% used is no limit")
        let requests = api.requests()
        #expect(requests.count == 1 && requests.first?["path"] == "/v1/responses", "\(requests.map { $0["path"] })")
        #expect(requests.first?["last_input"] == "What is the answer?")
        f.expectNoProcessLeft()
    }

    /// Codex really runs the command the model asks for, in the task's folder, and its output
    /// goes back to the model.
    @Test func aToolTurnRunsCodexsShell() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Write the file", "exec": "echo written-by-codex > tool-ran.txt && cat tool-ran.txt"},
             {"match": "written-by-codex", "text": "The file holds written-by-codex."}]
            """)
        let (outcome, tasks) = try f.run([("codex", "Write the file.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        #expect(readText(f.folder + "/tool-ran.txt") == "written-by-codex\n")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("The file holds written-by-codex."))
        let progress = f.transcript(id, root: f.results).filter { $0["type"] == "progress" }
        #expect(progress.count == 1 && progress.first?["tool"] == "shell", "\(progress)")
        #expect(progress.first?["text"] == "echo written-by-codex > tool-ran.txt && cat tool-ran.txt", "the model's own words: \(progress)")
        let requests = api.requests()
        #expect(requests.count == 2 && requests.last?["last_input"]?.stringValue?.hasPrefix("function_call_output") == true)
        f.expectNoProcessLeft()
    }

    /// Codex does not retry a 429: the attempt fails as a rate limit at once, and drover runs
    /// the task again, which succeeds.
    @Test func aRateLimitIsDroversToRetry() throws {
        let (f, api) = try Self.setUp(script: """
            [{"times": 1, "status": 429, "message": "Rate limit reached for fake-model"},
             {"text": "Answered after the limit."}]
            """, settings: "\"killGrace\": \"3s\", \"retries\": 1, \"retryBackoff\": {\"initial\": \"1s\"}")
        let (outcome, tasks) = try f.run([("codex", "Say something.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed" && task["attempt"] == 2, "\(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("Answered after the limit."))
        #expect(api.requests().count == 2, "one request an attempt")
        let limits = f.transcript(id, root: f.results).filter { $0["type"] == "rate_limit" }
        #expect(limits.count == 1 && limits.first?["scope"] == "provider", "\(limits)")
        let first = try #require(task["attempts"]?.arrayValue?.first?.objectValue)
        #expect(first["error"]?.stringValue?.hasPrefix("codex failed (HTTP 429)") == true, "\(first)")
        f.expectNoProcessLeft()
    }

    /// Codex reads the account's windows from the API's `x-codex-primary-*` headers and
    /// announces them (`account/rateLimits/updated`): a window used up is a rate limit for
    /// drover, with a wait until the window resets, even though this answer still came.
    @Test func aUsedUpRateLimitWindowIsARateLimitFrame() throws {
        let resetsAt = Clock.wallMs() / 1000 + 120
        let (f, api) = try Self.setUp(script: """
            [{"text": "This was the last one for now.",
              "headers": {"x-codex-primary-used-percent": "100", "x-codex-primary-window-minutes": "300", "x-codex-primary-reset-at": "\(resetsAt)"}}]
            """)
        let (outcome, tasks) = try f.run([("codex", "One more?")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        let id = try #require(task["id"]?.stringValue)
        let limits = f.transcript(id, root: f.results).filter { $0["type"] == "rate_limit" }
        #expect(limits.count == 1, "\(limits)")
        #expect(limits.first?["message"] == "codex: the primary rate-limit window of 300 minutes is used up (100%)", "\(limits)")
        let wait = limits.first?["retry_after_ms"]?.intValue ?? 0
        #expect(wait > 100_000 && wait <= 120_000, "until the window resets: \(limits)")
        #expect(api.requests().count == 1)
        f.expectNoProcessLeft()
    }

    /// A request the API refuses for good: the task ends in error, not retried.
    @Test func aPermanentFailureEndsTheTaskInError() throws {
        let (f, api) = try Self.setUp(script: #"[{"status": 400, "message": "Invalid schema for function 'exec_command'"}]"#,
                                      settings: "\"killGrace\": \"3s\", \"retries\": 2")
        let (_, tasks) = try f.run([("codex", "Do the impossible.")])
        let task = try #require(tasks[1])
        #expect(task["status"] == "error" && task["reason"] == "worker_error" && task["attempt"] == 1, "\(task)")
        let error = try #require(task["error"]?.stringValue)
        #expect(error.contains("Invalid schema for function 'exec_command'") && !error.hasSuffix("(retryable)"), "\(error)")
        #expect(api.requests().count == 1)
        f.expectNoProcessLeft()
    }

    /// A model that streams slowly, quiet for longer than the stale timeout: the adapter's
    /// heartbeats keep the task alive until the answer.
    @Test func aSlowStreamOutlivesTheStaleTimeout() throws {
        let (f, api) = try Self.setUp(script: #"[{"text": "A slow but complete answer.", "stall_ms": 2500}]"#,
                                    adapterFlags: ["--heartbeat", "200ms"],
                                    settings: "\"killGrace\": \"3s\", \"retries\": 0, \"staleTimeout\": \"1s\"")
        let (outcome, tasks) = try f.run([("codex", "Take your time.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        #expect((task["duration_ms"]?.numberValue ?? 0) >= 2500, "the stall was real: \(task)")
        let id = try #require(task["id"]?.stringValue)
        #expect(f.resultText(id, root: f.results).contains("A slow but complete answer."))
        #expect(api.requests().count == 1, "no retry: the stream was slow, not broken")
        f.expectNoProcessLeft()
    }

    /// `drover continue` resumes the thread: the model is sent the earlier turn.
    @Test func continueResumesTheThreadWithItsEarlierTurns() throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Remember the word apricot", "text": "I will remember it."},
             {"match": "Which word", "text": "The word was apricot."}]
            """)
        let first = try f.ok(["launch", "--agent", "codex", "--prompt", "Remember the word apricot."])
        _ = try f.ok(["output", first, "--wait", "--timeout", "60s"])
        let session = try #require(try f.task(first)["session_id"]?.stringValue)
        let thread = try #require(try f.task(first)["result_data"]?.objectValue?["cli_session_id"]?.stringValue)
        let answer = try f.ok(["continue", session, "--prompt", "Which word did I give you?", "--wait"])
        #expect(answer.contains("The word was apricot."), "\(answer)")
        let requests = api.requests()
        #expect(requests.count == 2)
        let resumed = JSONWriter.string(requests.last?["body"]?.objectValue?["input"] ?? .null)
        #expect(resumed.contains("Remember the word apricot.") && resumed.contains("I will remember it."), "\(resumed.suffix(800))")
        let second = try #require(FileSystem.list(f.state + "/tasks").first { $0 != first })
        let resumedTask = try f.task(second)
        #expect(resumedTask["result_data"]?.objectValue?["cli_session_id"]?.stringValue == thread, "the same thread")
        // The server repeats the thread's earlier usage when it resumes it: not this task's.
        let usage = try #require(resumedTask["usage"]?.objectValue)
        #expect(usage["input_tokens"] == 10 && usage["output_tokens"] == 5, "\(usage)")
        f.expectNoProcessLeft()
    }

    /// A prompt sent to a session while its turn runs becomes the next turn of the same
    /// thread; the task's result is that turn's answer.
    @Test func aFollowUpPromptToARunningSessionIsItsNextTurn() throws {
        // The first turn's command waits (10 s at most) until the follow-up has been sent.
        let (f, api) = try Self.setUp(script: """
            [{"match": "Start slowly", "exec": "for i in $(seq 100); do [ -e sent ] && break; sleep 0.1; done; echo slept"},
             {"match": "slept", "text": "First turn done."},
             {"match": "And a second thing", "text": "Second turn done."}]
            """)
        let id = try f.ok(["launch", "--agent", "codex", "--prompt", "Start slowly."])
        #expect(eventually(withinMs: 20_000) { api.requests().count == 1 })
        let session = try #require(try f.task(id)["session_id"]?.stringValue)
        #expect(try f.ok(["continue", session, "--prompt", "And a second thing."]) == id, "a running session takes the prompt")
        try FileSystem.writeFile(f.folder + "/sent", [])
        let output = try f.ok(["output", id, "--wait", "--timeout", "60s"])
        #expect(output.contains("Second turn done."), "\(output)")
        let task = try f.task(id)
        #expect(task["status"] == "completed" && task["result_data"]?.objectValue?["turns"] == 2, "\(task)")
        let requests = api.requests()
        #expect(requests.count == 3, "\(requests.map { $0["last_input"] })")
        let last = JSONWriter.string(requests.last?["body"]?.objectValue?["input"] ?? .null)
        #expect(last.contains("Start slowly.") && last.contains("First turn done.") && last.contains("And a second thing."), "\(last.suffix(800))")
        let transcript = f.transcript(id)
        #expect(transcript.contains { $0["dir"] == "in" && $0["type"] == "message" && $0["role"] == "user" && $0["text"] == "And a second thing." })
        #expect(transcript.filter { $0["type"] == "session" }.count == 1, "one thread")
        f.expectNoProcessLeft()
    }

    /// Cancel while Codex runs a long command: the turn is interrupted, and the server, its
    /// shell and the command are gone.
    @Test func cancelDuringALongToolCommandLeavesNothing() throws {
        let (f, api) = try Self.setUp(script: #"[{"match": "Wait a minute", "exec": "sleep 60"}]"#)
        let id = try f.ok(["launch", "--agent", "codex", "--prompt", "Wait a minute."])
        #expect(eventually(withinMs: 20_000) { f.processesMentioningFolder().contains { $0.command.hasPrefix("sleep 60") } },
                "\(f.processesMentioningFolder())")
        let started = Clock.monotonicNs()
        _ = try f.ok(["cancel", id])
        let task = try f.task(id)
        #expect(task["status"] == "cancelled" && task["reason"] == "user", "\(task)")
        #expect(task["signal"] == nil || task["signal"] == .null, "the adapter left on its own, not by drover's SIGKILL: \(task)")
        #expect(task["exit_code"] == 143, "cancelled: never a clean exit: \(task)")
        #expect(Clock.monotonicNs() - started < 3_000_000_000, "within drover's killGrace")
        #expect(api.requests().count == 1, "the interrupted command's output never went to the model")
        f.expectNoProcessLeft()
    }

    /// A server that dies mid-command: the task fails saying so, and the command, which Codex
    /// ran in a session of its own (out of the server's process group), is still found and
    /// killed.
    @Test func aServerThatDiesLeavesNoCommandBehind() throws {
        let (f, api) = try Self.setUp(script: #"[{"match": "Wait a minute", "exec": "sleep 63"}]"#)
        let id = try f.ok(["launch", "--agent", "codex", "--prompt", "Wait a minute."])
        #expect(eventually(withinMs: 20_000) { f.processesMentioningFolder().contains { $0.command.hasPrefix("sleep 63") } },
                "\(f.processesMentioningFolder())")
        let server = try #require(f.processesMentioningFolder().first { $0.command.contains("codex-app-server -c") })
        kill(server.pid, SIGKILL)
        let output = try f.drover(["output", id, "--wait", "--timeout", "30s"])
        #expect(output.status != 0)
        let task = try f.task(id)
        #expect(task["status"] == "error", "\(task)")
        #expect(task["error"]?.stringValue?.hasPrefix("codex-app-server was killed by signal 9 (SIGKILL) before its turn ended") == true, "\(task)")
        #expect(api.requests().count == 1)
        f.expectNoProcessLeft()
    }

    /// The task's ttl ends a turn that runs too long, its command included.
    @Test func theTTLEndsALongTurnAndLeavesNothing() throws {
        let (f, api) = try Self.setUp(script: #"[{"match": "Wait a minute", "exec": "sleep 62"}]"#,
                                    settings: "\"killGrace\": \"3s\", \"retries\": 0, \"taskTtl\": \"4s\"")
        let (_, tasks) = try f.run([("codex", "Wait a minute.")])
        let task = try #require(tasks[1])
        #expect(task["status"] == "cancelled" && task["reason"] == "ttl", "\(task)")
        #expect((task["duration_ms"]?.numberValue ?? 0) < 20_000, "\(task)")
        #expect(api.requests().count == 1)
        f.expectNoProcessLeft()
    }

    /// With the approval policy "untrusted" the server asks before running a command:
    /// `--approval decline` (the default) refuses, `--approval accept` lets it run.
    @Test(arguments: ["decline", "accept"]) func approvalRequestsAreAnsweredByThePolicy(policy: String) throws {
        let (f, api) = try Self.setUp(script: """
            [{"match": "Touch the file", "exec": "touch approved.txt"},
             {"match": "function_call_output", "text": "Done asking."}]
            """, adapterFlags: ["--approval", policy, "--approval-policy", "untrusted"])
        let (outcome, tasks) = try f.run([("codex", "Touch the file.")])
        #expect(outcome.status == 0, "\(outcome.stdout) \(outcome.stderr)")
        let task = try #require(tasks[1])
        #expect(task["status"] == "completed", "\(task)")
        #expect(FileSystem.exists(f.folder + "/approved.txt") == (policy == "accept"))
        let id = try #require(task["id"]?.stringValue)
        let logs = f.transcript(id, root: f.results).filter { $0["type"] == "log" }.compactMap { $0["text"]?.stringValue }
        let verb = policy == "accept" ? "accepted" : "declined"
        #expect(logs.contains { $0.hasPrefix("\(verb) by --approval \(policy):") && $0.contains("touch approved.txt") }, "\(logs)")
        let output = api.requests().last?["last_input"]?.stringValue ?? ""
        #expect(output.contains("rejected") == (policy == "decline"), "\(output)")
        f.expectNoProcessLeft()
    }
}

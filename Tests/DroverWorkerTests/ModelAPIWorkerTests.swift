import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// drover_model_api.py under real drover, against fake_model_server.py on 127.0.0.1.
@Suite struct ModelAPIWorkerTests {
    // Not DROVER_*: drover passes those to every child.
    static let keyVariable = "MODEL_TEST_API_KEY"
    static let key = "sk-test-7f3a9c"

    /// An agent of the model API worker for `api` at `server`, with the key passed or not.
    func modelAgent(_ name: String, api: String, server: FakeModelServer, passKey: Bool = true, model: String = "echo",
                    options: [String] = [], extra: String = "") -> String {
        let key = options.contains("--no-api-key") ? [] : ["--api-key-env", Self.keyVariable]
        let command = [PythonWorkers.modelAPI, "--api", api, "--base-url", server.baseURL(api)] + key + options
        let passEnv = passKey ? "\"passEnv\": [\(jsonString(Self.keyVariable))]" : ""
        return agent(name, command, provider: api, model: model, extra: [passEnv, extra].filter { !$0.isEmpty }.joined(separator: ", "))
    }

    func expectedAnswer(_ prompt: String, messages: Int = 1, roles: String = "user") -> String {
        "Heard \(messages) messages (\(roles)). You said: \(prompt)\n\nThat is my whole answer."
    }

    @Test func streamsBothAPIsIntoCoalescedMessagesAndAResultWithUsage() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: Self.key)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server, options: ["--price-input", "2.5", "--price-output", "10"]),
            modelAgent("claude", api: "anthropic", server: server, options: ["--price-input", "3", "--price-output", "15"]),
        ]), manifest: [
            #"{"agent": "gpt", "prompt": "count the open issues please"}"#,
            #"{"agent": "claude", "prompt": "summarise the design notes"}"#,
        ], environment: ["\(Self.keyVariable)=\(Self.key)"])
        #expect(outcome.command.status == 0, "\(outcome.command.stderr)")

        for (line, api, prompt, stop) in [(1, "openai", "count the open issues please", "stop"), (2, "anthropic", "summarise the design notes", "end_turn")] {
            let task = outcome.task(line)
            #expect(task["status"] == "completed" && task["reason"] == "result", "\(api): \(task)")
            let answer = expectedAnswer(prompt)
            #expect(outcome.result(line) == answer)
            // The fake server streams one delta per word: the worker sends far fewer frames,
            // and their texts joined are the answer exactly.
            let messages = try outcome.assistantMessages(line)
            #expect(messages.joined() == answer)
            #expect(messages.count >= 2 && messages.count <= 3, "\(api): \(messages.count) message frames")
            let data = try #require(task["result_data"]?.objectValue, "\(api)")
            let usage = try #require(data["usage"]?.objectValue)
            let deltas = answer.split(whereSeparator: \.isWhitespace).count  // the server sends a word a delta
            #expect(data["api"]?.stringValue == api)
            #expect(data["model"] == "echo")
            #expect(data["stop_reason"]?.stringValue == stop)
            #expect(data["requests"] == 1 && data["turns"] == 1)
            #expect(usage["input_tokens"]?.intValue == prompt.split(separator: " ").count)
            #expect(usage["output_tokens"]?.intValue == deltas)
            #expect(usage["total_tokens"]?.intValue == prompt.split(separator: " ").count + deltas)
            // The same figures went to drover as `usage` frames while the answer streamed in,
            // priced per million tokens; the last one holds the totals.
            let frames = try outcome.transcript(line).filter { $0["dir"] == "in" && $0["type"] == "usage" }
            #expect(frames.count == (api == "openai" ? 1 : 2), "\(api): \(frames)")  // anthropic: message_start, message_delta
            let last = try #require(frames.last)
            let (inputPrice, outputPrice) = api == "openai" ? (2.5, 10.0) : (3.0, 15.0)
            let cost = (Double(prompt.split(separator: " ").count) * inputPrice + Double(deltas) * outputPrice) / 1e6
            #expect(last["input_tokens"] == usage["input_tokens"] && last["output_tokens"] == usage["output_tokens"])
            #expect(last["cache_read_tokens"] == 0 && last["model"] == "echo")
            #expect(abs((last["cost_usd"]?.numberValue ?? -1) - cost) < 1e-9, "\(api): \(last)")
            #expect(usage["cost_usd"] == last["cost_usd"])

            let request = try #require(try server.requests(model: "echo", api: api).first { $0["messages"]?.arrayValue?.first?.objectValue?["content"]?.stringValue == prompt })
            #expect(request["key_ok"] == true)
            #expect(request["stream"] == true)
            if api == "openai" {
                #expect(request["stream_options"]?.objectValue?["include_usage"] == true)
            } else {
                #expect(request["anthropic_version"] == "2023-06-01")
                #expect(request["max_tokens"] == 4096)
            }
        }
        // The key went to the worker's environment and nowhere else.
        #expect(!containsText(Self.key, under: outcome.results))
        outcome.expectNoWorkerLeft()
    }

    @Test func theKeyReachesOnlyAgentsThatListItInPassEnv() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: Self.key)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("passed", api: "anthropic", server: server, model: "passed"),
            modelAgent("withheld", api: "anthropic", server: server, passKey: false, model: "withheld"),
        ]), manifest: [
            #"{"agent": "passed", "prompt": "hello"}"#,
            #"{"agent": "withheld", "prompt": "hello"}"#,
        ], environment: ["\(Self.keyVariable)=\(Self.key)"])
        #expect(outcome.command.status == 1)
        #expect(outcome.task(1)["status"] == "completed")
        let refused = outcome.task(2)
        #expect(refused["status"] == "error" && refused["reason"] == "worker_error")
        let message = refused["error"]?.stringValue ?? ""
        #expect(message.contains("the API key variable \(Self.keyVariable) is not set") && message.contains("passEnv"), "\(message)")
        #expect(try server.requests(model: "withheld", api: "anthropic").isEmpty, "no request without a key")
        #expect(try server.requests(model: "passed", api: "anthropic").map { $0["key_ok"] } == [true])
        outcome.expectNoWorkerLeft()
    }

    /// By default a rate limit (429, 529, an overloaded_error) is reported with a `rate_limit`
    /// frame carrying the server's retry-after and ends the attempt as a retryable error, so that
    /// drover's pool-wide backoff decides. Checked on the frames of the first attempt, which is
    /// what the worker controls: a drover that retries goes on with more attempts after them.
    @Test func rateLimitsAreReportedToDroverAndEndTheAttempt() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: Self.key)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server),
            modelAgent("claude", api: "anthropic", server: server),
        ]), manifest: [
            #"{"agent": "gpt", "prompt": "hello", "model": "rate-limited"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "rate-limited-date"}"#,
            #"{"agent": "gpt", "prompt": "hello", "model": "overloaded"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "overloaded"}"#,
        ], environment: ["\(Self.keyVariable)=\(Self.key)"])

        let cases: [(line: Int, api: String, model: String, status: String, wait: ClosedRange<Int>)] = [
            (1, "openai", "rate-limited", "HTTP 429 Too Many Requests", 1000...1000),  // retry-after: 1
            (2, "anthropic", "rate-limited-date", "HTTP 429 Too Many Requests", 1000...2000),  // an HTTP date 2 s ahead, whole seconds
            (3, "openai", "overloaded", "HTTP 503 Service Unavailable", 0...0),  // a 503 whose body says overloaded_error
            (4, "anthropic", "overloaded", "HTTP 529", 0...0),
        ]
        for c in cases {
            let frames = try firstAttempt(outcome.transcript(c.line)).filter { $0["dir"] == "in" }
            let limits = frames.filter { $0["type"] == "rate_limit" }
            #expect(limits.count == 1, "\(c.model): \(frames)")
            let limit = try #require(limits.first)
            let wait = try #require(limit["retry_after_ms"]?.intValue, "\(c.model): \(limit)")
            #expect(c.wait.contains(wait), "\(c.model): retry_after_ms \(wait)")
            #expect(limit["scope"] == "provider")
            let said = limit["message"]?.stringValue ?? ""
            #expect(said.hasPrefix("\(c.status) from \(server.baseURL(c.api))"), "\(said)")
            // Then the attempt ends at once, retryably, with the same words.
            let end = try #require(frames.last { $0["type"] == "result" || $0["type"] == "error" })
            #expect(end["type"] == "error" && end["retryable"] == true && end["message"]?.stringValue == said, "\(end)")
            #expect(frames.firstIndex(of: limit)! < frames.firstIndex(of: end)!)
            let task = outcome.task(c.line)
            if task["attempt"]?.intValue ?? 1 == 1 {
                #expect(task["status"] == "error" && task["reason"] == "worker_error" && task["error"]?.stringValue == said + " (retryable)", "\(task)")
                #expect(try server.requests(model: c.model, api: c.api).count == 1, "\(c.model): the worker did not retry by itself")
            }
        }
        outcome.expectNoWorkerLeft()
    }

    /// `--max-retries N`: the worker rides rate limits out itself (each still reported, so the
    /// pool cools down), waiting what the server says; other transient failures are retried
    /// `--max-server-retries` times (default 2) without a rate limit.
    @Test func theWorkerRetriesItselfWhenToldAndServerErrorsALittle() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: Self.key)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server, options: ["--max-retries", "2"]),
            modelAgent("claude", api: "anthropic", server: server, options: ["--max-retries", "2"]),
            modelAgent("plain", api: "openai", server: server, options: ["--max-retry-wait", "0.1"]),
        ]), manifest: [
            #"{"agent": "gpt", "prompt": "hello", "model": "rate-limited-2"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "rate-limited"}"#,
            #"{"agent": "plain", "prompt": "hello", "model": "server-error"}"#,
        ], environment: ["\(Self.keyVariable)=\(Self.key)"])

        for (line, api, model, refused) in [(1, "openai", "rate-limited-2", 2), (2, "anthropic", "rate-limited", 1)] {
            let task = outcome.task(line)
            #expect(task["status"] == "completed" && task["attempt"]?.intValue ?? 1 == 1, "\(model): \(task)")
            #expect(outcome.result(line) == expectedAnswer("hello"))
            #expect(task["result_data"]?.objectValue?["requests"]?.intValue == refused + 1)
            #expect(try outcome.transcript(line).filter { $0["type"] == "rate_limit" }.count == refused)
            let times = try server.requests(model: model, api: api).compactMap { $0["t"]?.numberValue }
            #expect(times.count == refused + 1)
            let least = model == "rate-limited" ? 0.9 : 0.25  // retry-after: 1, retry-after-ms: 300
            for (earlier, later) in zip(times, times.dropFirst()) {
                #expect(later - earlier >= least, "\(model): retried after \(later - earlier) s")
            }
            #expect(outcome.stderr(line).contains("HTTP 429 Too Many Requests from \(server.baseURL(api))"), "the retry is logged")
        }
        let failed = outcome.task(3)
        let frames = try firstAttempt(outcome.transcript(3))
        #expect(!frames.contains { $0["type"] == "rate_limit" }, "a 500 is no rate limit")
        let end = try #require(frames.last { $0["dir"] == "in" && $0["type"] == "error" })
        #expect(end["message"]?.stringValue == "HTTP 500 Internal Server Error from \(server.baseURL("openai"))/chat/completions: 'Internal server error' after 3 requests")
        #expect(end["retryable"] == true)
        if failed["attempt"]?.intValue ?? 1 == 1 {
            #expect(failed["status"] == "error" && failed["reason"] == "worker_error", "\(failed)")
            #expect(try server.requests(model: "server-error", api: "openai").count == 3)
        }
        outcome.expectNoWorkerLeft()
    }

    @Test func brokenStreamsAndUnreachableAPIsEndAsErrorsThatSayWhy() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: nil)
        defer { server.stop() }
        let nowhere = "http://127.0.0.1:\(try closedPort())/v1"
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server, options: ["--no-api-key"]),
            modelAgent("claude", api: "anthropic", server: server, options: ["--no-api-key"]),
            agent("nowhere", [PythonWorkers.modelAPI, "--api", "openai", "--base-url", nowhere, "--no-api-key"], provider: "local", model: "echo"),
        ], settings: #""retries": 0"#), manifest: [  // one attempt each: what the worker says, not drover's retries
            #"{"agent": "gpt", "prompt": "hello", "model": "drop"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "drop"}"#,
            #"{"agent": "gpt", "prompt": "hello", "model": "malformed"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "malformed"}"#,
            #"{"agent": "nowhere", "prompt": "hello"}"#,
        ])
        #expect(outcome.command.status == 1)
        #expect(outcome.tasks.allSatisfy { $0["status"] == "error" && $0["reason"] == "worker_error" }, "\(outcome.tasks.map { $0["reason"] })")
        func message(_ line: Int) -> String { outcome.task(line)["error"]?.stringValue ?? "" }
        for (line, api) in [(1, "openai"), (2, "anthropic")] {
            #expect(message(line).contains("the connection to \(server.baseURL(api))") && message(line).contains("mid-stream"), "\(message(line))")
            #expect(message(line).hasSuffix("(retryable)"))
            // What came before the drop was passed on.
            #expect(try outcome.assistantMessages(line).joined() == "Heard 1 messages ")
        }
        #expect(message(3).contains("has a malformed line 'data: {this is not json': not JSON"), "\(message(3))")
        #expect(message(4).contains("has a malformed line 'event: content_block_delta data: {this is not json': not JSON"), "\(message(4))")
        #expect(message(5) == "cannot reach \(nowhere)/chat/completions: [Errno 111] Connection refused (retryable)")
        outcome.expectNoWorkerLeft()
    }

    @Test func aStalledStreamIsEndedByDroversStaleTimeout() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: nil)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server, model: "stall", options: ["--no-api-key"], extra: #""staleTimeout": "1s""#),
        ]), manifest: [#"{"agent": "gpt", "prompt": "hello"}"#])
        #expect(outcome.command.status == 4)
        let task = outcome.task(1)
        #expect(task["status"] == "cancelled" && task["reason"] == "stale", "\(task)")
        let duration = try #require(task["duration_ms"]?.intValue)
        #expect(duration >= 1_000 && duration < 4_000, "ended after \(duration) ms")
        #expect(task["signal"]?.isNull == true, "the worker left on the cancel, before SIGKILL: \(task)")
        // The server did answer: the worker was waiting on the stream when it was stopped.
        #expect(try server.requests(model: "stall", api: "openai").count == 1)
        #expect(outcome.stderr(1).contains("drover_worker: stopping: "), "the cancel frame or SIGTERM reached the worker")
        outcome.expectNoWorkerLeft()
    }

    /// `drover continue` starts a new task in the session; the worker rebuilds the conversation
    /// from the session's transcript and sends it whole.
    @Test func aContinuedSessionSendsTheEarlierTurns() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: nil)
        defer { server.stop() }
        try FileSystem.writeFile(folder + "/config.jsonc", Array(config(agents: [
            modelAgent("gpt", api: "openai", server: server, options: ["--no-api-key"]),
        ]).utf8))
        let common = ["--state-dir", folder + "/state", "--config", folder + "/config.jsonc"]
        defer {
            _ = try? runDrover(["shutdown", "--no-autostart"] + common, in: folder)
            if let pid = Int32(readText(folder + "/state/daemon.lock").split(separator: "\n").first ?? "") {
                #expect(eventually(withinMs: 3_000) { !Processes.isAlive(pid) }, "the daemon \(pid) is still running")
            }
        }
        let launched = try runDrover(["launch", "--agent", "gpt", "--prompt", "first question", "--json"] + common, in: folder)
        #expect(launched.status == 0, "\(launched.stderr)")
        let first = try parseObject(launched.stdout)
        let taskID = try #require(first["task_id"]?.stringValue)
        let session = try #require(first["session_id"]?.stringValue)
        let firstOutput = try runDrover(["output", taskID, "--wait", "--timeout", "10s"] + common, in: folder)
        #expect(firstOutput.status == 0, "\(firstOutput.stdout) \(firstOutput.stderr)")

        let continued = try runDrover(["continue", session, "--prompt", "second question", "--wait"] + common, in: folder)
        #expect(continued.status == 0, "\(continued.stderr)")
        let answer = expectedAnswer("second question", messages: 3, roles: "user,assistant,user")
        #expect(continued.stdout.contains(answer), "\(continued.stdout)")
        let requests = try server.requests(model: "echo", api: "openai")
        #expect(requests.count == 2)
        let sent = try #require(requests.last?["messages"]?.arrayValue).compactMap(\.objectValue)
        #expect(sent.map { $0["role"]?.stringValue ?? "" } == ["user", "assistant", "user"])
        #expect(sent.map { $0["content"]?.stringValue ?? "" } == ["first question", expectedAnswer("first question"), "second question"])

        for task in [taskID] + FileSystem.list(folder + "/state/tasks") {
            if let pid = try? readJSON(folder + "/state/tasks/\(task)/task.json")["pid"]?.intValue {
                #expect(eventually(withinMs: 2_000) { !Processes.isAlive(Int32(pid)) })
            }
        }
    }
}

/// Whether any file under `folder` holds `text`.
func containsText(_ text: String, under folder: String) -> Bool {
    FileSystem.list(folder).contains { name in
        let path = folder + "/" + name
        return FileSystem.isDirectory(path) ? containsText(text, under: path) : readText(path).contains(text)
    }
}

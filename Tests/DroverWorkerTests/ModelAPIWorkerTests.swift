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
            modelAgent("gpt", api: "openai", server: server),
            modelAgent("claude", api: "anthropic", server: server),
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

    @Test func retriesHonourRetryAfterThenGiveUpRetryably() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let server = try FakeModelServer(folder: folder, key: Self.key)
        defer { server.stop() }
        let outcome = try runBatch(in: folder, config: config(agents: [
            modelAgent("gpt", api: "openai", server: server, options: ["--max-retries", "2"]),
            modelAgent("claude", api: "anthropic", server: server, options: ["--max-retries", "2"]),
        ]), manifest: [
            #"{"agent": "gpt", "prompt": "hello", "model": "rate-limited"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "rate-limited-date"}"#,
            #"{"agent": "gpt", "prompt": "hello", "model": "overloaded"}"#,
            #"{"agent": "claude", "prompt": "hello", "model": "overloaded"}"#,
        ], environment: ["\(Self.keyVariable)=\(Self.key)"])
        #expect(outcome.command.status == 1)

        // 429 with retry-after (seconds, then an HTTP date): waited as told, then answered.
        for (line, api, model) in [(1, "openai", "rate-limited"), (2, "anthropic", "rate-limited-date")] {
            let task = outcome.task(line)
            #expect(task["status"] == "completed", "\(model): \(task)")
            #expect(outcome.result(line) == expectedAnswer("hello"))
            #expect(task["result_data"]?.objectValue?["requests"] == 2)
            let times = try server.requests(model: model, api: api).compactMap { $0["t"]?.numberValue }
            #expect(times.count == 2)
            if times.count == 2 { #expect(times[1] - times[0] >= 0.9, "\(model): retried after \(times[1] - times[0]) s") }
            #expect(outcome.stderr(line).contains("HTTP 429 Too Many Requests from \(server.baseURL(api))"))
        }
        // 503 / 529 every time: three attempts, then a retryable error.
        for (line, api, status) in [(3, "openai", "HTTP 503 Service Unavailable"), (4, "anthropic", "HTTP 529")] {
            let task = outcome.task(line)
            #expect(task["status"] == "error" && task["reason"] == "worker_error", "\(api): \(task)")
            let message = task["error"]?.stringValue ?? ""
            #expect(message.hasPrefix(status) && message.hasSuffix("'Overloaded' after 3 attempts (retryable)"), "\(message)")
            #expect(try server.requests(model: "overloaded", api: api).count == 3)
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
        ]), manifest: [
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

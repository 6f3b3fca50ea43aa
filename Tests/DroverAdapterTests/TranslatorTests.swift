import DroverAdapterKit
import DroverWire
import Testing

@Suite struct ClaudeTranslatorTests {
    @Test func aSuccessfulRunGivesMessagesToolCallsAndAResultWithCost() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "success")
        #expect(frames.first == ["type": "session", "cli": "claude", "cli_session_id": "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b"])
        #expect(frames.ofType("session").count == 1, "the id is announced once")
        let tools = frames.ofType("progress")
        #expect(tools.map { $0["tool"]?.stringValue } == ["Grep", "Read"])
        #expect(tools[1]["input"] == ["file_path": "/work/project/Sources/DroverWire/Frame.swift"])
        #expect(tools[1]["text"] == "Read /work/project/Sources/DroverWire/Frame.swift")
        let messages = frames.ofType("message")
        #expect(messages.filter { $0["role"] == "assistant" }.count == 2)
        #expect(messages.filter { $0["role"] == "tool" }.count == 2)
        guard case .succeeded(let text, let data)? = translator.verdict else {
            Issue.record("no success verdict: \(String(describing: translator.verdict))")
            return
        }
        #expect(text.hasPrefix("The decoder reads a 4-byte big-endian length"))
        #expect(data["cost_usd"] == .number(0.0423))
        #expect(data["usage"]?.objectValue?["output_tokens"] == .number(402))
        #expect(data["cli_session_id"] == "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b")
        #expect(data["num_turns"] == .number(3))
    }

    @Test func anAPIRateLimitIsARetryableFailure() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "rate-limit")
        #expect(frames.ofType("log").first?["text"]?.stringValue?.contains("attempt 1 of 10: rate_limit (HTTP 429)") == true)
        guard case .failed(let message, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable)
        #expect(message.hasPrefix("claude failed (HTTP 429): API Error: 429"))
    }

    @Test func anErrorSubtypeWithoutRateLimitIsNotRetryable() {
        var translator = ClaudeTranslator()
        _ = translator.translate(["type": "result", "subtype": "error_max_turns", "is_error": true, "session_id": "s1", "num_turns": 10])
        #expect(translator.verdict == .failed(message: "claude failed (error_max_turns): no detail given", retryable: false))
    }

    @Test func anOverloadedAssistantErrorMakesTheFailureRetryable() {
        var translator = ClaudeTranslator()
        _ = translator.translate(["type": "assistant", "error": "server_error", "message": ["content": [["type": "text", "text": "API Error: Repeated 529 Overloaded errors"]]]])
        _ = translator.translate(["type": "result", "subtype": "success", "is_error": true, "result": "API Error: Repeated 529 Overloaded errors"])
        guard case .failed(_, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable)
    }

    @Test func todoWriteAlsoReportsOpenTodos() {
        var translator = ClaudeTranslator()
        let frames = translator.translate([
            "type": "assistant",
            "message": ["content": [["type": "tool_use", "id": "t1", "name": "TodoWrite", "input": ["todos": [
                ["content": "read", "status": "completed"], ["content": "write", "status": "in_progress"], ["content": "test", "status": "pending"],
            ]]]]],
        ])
        #expect(frames.ofType("todo") == [["type": "todo", "open": 2, "total": 3]])
    }

    @Test func aStreamWithoutAResultHasNoAnswer() throws {
        let (_, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "crash")
        #expect(translator.verdict == nil)
        #expect(translator.verdictAtCleanExit() == nil)
        #expect(translator.cliSessionID == "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b")
    }
}

@Suite struct CodexTranslatorTests {
    @Test func aSuccessfulTurnGivesToolCallsTodosAndUsage() throws {
        let (frames, translator) = try Recorded.translate(CodexTranslator(), "codex", "success")
        #expect(frames.first == ["type": "session", "cli": "codex", "cli_session_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"])
        let tools = frames.ofType("progress")
        #expect(tools.map { $0["tool"]?.stringValue } == ["shell", "apply_patch"], "started and completed items count once")
        #expect(tools[0]["input"] == ["command": "bash -lc 'rg -n FrameDecoder Sources'"])
        #expect(frames.ofType("todo") == [["type": "todo", "open": 1, "total": 2], ["type": "todo", "open": 0, "total": 2]])
        #expect(frames.ofType("message").count == 1, "reasoning stays private")
        guard case .succeeded(let text, let data)? = translator.verdict else {
            Issue.record("no success verdict")
            return
        }
        #expect(text.hasPrefix("FrameDecoder reads a 4-byte big-endian length"))
        #expect(data["usage"] == ["input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122])
        #expect(data["cost_usd"] == nil, "codex reports no cost")
    }

    @Test func aFailedTurnAfterA429IsRetryable() throws {
        let (frames, translator) = try Recorded.translate(CodexTranslator(), "codex", "rate-limit")
        #expect(frames.ofType("log").count == 1)
        #expect(translator.verdict == .failed(message: "codex failed: exceeded retry limit, last status: 429 Too Many Requests, request id: 9c84b52ce87fbe62-SJC", retryable: true))
    }

    @Test func aStreamErrorAloneDecidesNothingUntilTheEnd() {
        var translator = CodexTranslator()
        _ = translator.translate(["type": "error", "message": "stream disconnected before completion"])
        #expect(translator.verdict == nil)
        #expect(translator.verdictAtCleanExit() == .failed(message: "codex failed: stream disconnected before completion", retryable: false))
    }
}

@Suite struct OpencodeTranslatorTests {
    @Test func aRunSumsCostAndTokensOverItsSteps() throws {
        let (frames, translator) = try Recorded.translate(OpencodeTranslator(), "opencode", "success")
        #expect(frames.first == ["type": "session", "cli": "opencode", "cli_session_id": "ses_494719016ffe85dkDMj0FPRbHK"])
        #expect(frames.ofType("progress").map { $0["tool"]?.stringValue } == ["grep", "read"])
        #expect(frames.ofType("progress")[1]["input"] == ["filePath": "/work/project/Sources/DroverWire/Frame.swift"])
        #expect(translator.verdict == nil, "this release ends with the process, not a line")
        guard case .succeeded(let text, let data)? = translator.verdictAtCleanExit() else {
            Issue.record("no success at a clean exit")
            return
        }
        #expect(text == "FrameDecoder (Sources/DroverWire/Frame.swift) reads a 4-byte big-endian length, then the JSON payload.")
        #expect(data["cost_usd"] == .number(0.0262))
        #expect(data["usage"]?.objectValue?["output"] == .number(190))
        #expect(data["usage"]?.objectValue?["cache"]?.objectValue?["read"] == .number(39310))
    }

    @Test func anAPIErrorMarkedRetryableIsRetryable() throws {
        let (_, translator) = try Recorded.translate(OpencodeTranslator(), "opencode", "rate-limit")
        guard case .failed(let message, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable)
        #expect(message.hasPrefix("opencode failed (APIError, HTTP 429): This request would exceed the rate limit"))
    }

    @Test func anAuthErrorIsNotRetryable() {
        var translator = OpencodeTranslator()
        _ = translator.translate(["type": "error", "sessionID": "ses_1", "error": ["name": "ProviderAuthError", "data": ["providerID": "anthropic", "message": "API key is invalid"]]])
        #expect(translator.verdict == .failed(message: "opencode failed (ProviderAuthError): API key is invalid", retryable: false))
    }

    @Test func theDoneLineOfNewerReleasesEndsTheTurn() throws {
        let (_, translator) = try Recorded.translate(OpencodeTranslator(), "opencode", "resume")
        guard case .succeeded(let text, _)? = translator.verdict else {
            Issue.record("no success verdict")
            return
        }
        #expect(text == "As found before: FrameDecoder lives in Sources/DroverWire/Frame.swift.")
    }

    @Test func nothingAtAllIsNoAnswer() {
        #expect(OpencodeTranslator().verdictAtCleanExit() == nil)
    }
}

@Suite struct RetryClassifierTests {
    @Test func statusCodesAndWords() {
        #expect(RetryClassifier.isRetryable(status: 429))
        #expect(RetryClassifier.isRetryable(status: 529))
        #expect(RetryClassifier.isRetryable(status: 503))
        #expect(!RetryClassifier.isRetryable(status: 401))
        #expect(!RetryClassifier.isRetryable(status: nil))
        #expect(RetryClassifier.isRetryable(text: "last status: 429 Too Many Requests"))
        #expect(RetryClassifier.isRetryable(text: "Overloaded"))
        #expect(!RetryClassifier.isRetryable(text: "used 14290 tokens"), "a number inside a longer one is not a status")
        #expect(!RetryClassifier.isRetryable(text: "invalid x-api-key"))
    }
}

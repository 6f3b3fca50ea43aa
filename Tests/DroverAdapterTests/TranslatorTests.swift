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
        // The run's usage, as drover counts it (input without the cache), with its cost.
        #expect(translator.runUsage == UsageTotals(inputTokens: 12, outputTokens: 402, cacheReadTokens: 35862, cacheWriteTokens: 6021,
                                                   costUsd: 0.0423, model: "claude-sonnet-4-5-20250929"))
        // And the conversation's running total, for a later --resume to start from.
        #expect(translator.conversationCostUsd == 0.0423)
        #expect(frames.last == ["type": "cli_cost", "cli": "claude", "cli_session_id": "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b", "total_cost_usd": 0.0423])
    }

    /// Claude Code's total_cost_usd runs over the whole conversation across --resume runs: a
    /// resumed run costs that total less the total it began from.
    @Test func aResumedRunCostsItsTotalLessTheTotalBefore() throws {
        let (_, resumed) = try Recorded.translate(ClaudeTranslator(costBefore: 0.0423), "claude", "resume")
        #expect(resumed.runUsage?.costUsd == 0.0107)
        #expect(resumed.conversationCostUsd == 0.053)
        guard case .succeeded(_, let data)? = resumed.verdict else {
            Issue.record("no success verdict")
            return
        }
        #expect(data["cost_usd"] == 0.0107 && data["cli_total_cost_usd"] == 0.053)
        // Not knowing where the conversation stood, it claims no cost; the tokens still count.
        let (_, unknown) = try Recorded.translate(ClaudeTranslator(costBefore: nil), "claude", "resume")
        #expect(unknown.runUsage?.costUsd == nil && unknown.runUsage?.outputTokens == 402)
    }

    @Test func anAPIRateLimitIsARetryableFailureAfterRateLimitFrames() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "rate-limit")
        #expect(frames.ofType("log").first?["text"]?.stringValue?.contains("attempt 1 of 10: rate_limit (HTTP 429)") == true)
        guard case .failed(let message, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable)
        #expect(message.hasPrefix("claude failed (HTTP 429): API Error: 429"))
        // The CLI's retry (after its own delay) and the failed result each say "rate limit".
        let limits = frames.ofType("rate_limit")
        #expect(limits.count == 2)
        #expect(limits.first == ["type": "rate_limit", "retry_after_ms": 1100, "scope": "provider",
                                 "message": "claude is retrying the API, attempt 1 of 10: rate_limit (HTTP 429)"])
        #expect(limits.last == ["type": "rate_limit", "scope": "provider", "message": .string(message)])
        #expect(translator.runUsage == UsageTotals(costUsd: 0), "a refused run used nothing")
    }

    /// As Claude Code 2.1.332 prints it with CLAUDE_CODE_MAX_RETRIES=1: one api_retry line,
    /// then a result with is_error, api_error_status and terminal_reason.
    @Test func aRateLimitWithOneCLIRetry() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "rate-limit-one-retry")
        #expect(frames.ofType("rate_limit").compactMap { $0["retry_after_ms"]?.intValue } == [1150])
        #expect(frames.ofType("rate_limit").count == 2)
        #expect(translator.verdict == .failed(
            message: "claude failed (HTTP 429): API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}",
            retryable: true))
    }

    @Test func aRejectedRateLimitEventWaitsUntilItsReset() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "usage-limit")
        let limits = frames.ofType("rate_limit")
        #expect(limits.count == 1, "allowed_warning is no refusal")
        let wait = 4_102_444_800_000 - Int(Recorded.nowMs)
        #expect(limits.first?["retry_after_ms"]?.intValue == wait)
        #expect(limits.first?["message"]?.stringValue?.hasPrefix("claude hit its five_hour limit (resets in ") == true)
        guard case .failed(_, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable, "a usage limit passes")
        // A reset already past is no wait at all.
        var late = ClaudeTranslator()
        let past = late.translate(["type": "rate_limit_event", "rate_limit_info": ["status": "rejected", "resetsAt": 1_767_000_000]])
        #expect(past.ofType("rate_limit").first?["retry_after_ms"] == 0)
    }

    @Test func otherAPIRetriesAreLoggedButNoRateLimit() {
        var translator = ClaudeTranslator()
        let frames = translator.translate(["type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10, "retry_delay_ms": 2300,
                                           "error_status": 500, "error": "server_error"])
        #expect(frames.ofType("log").count == 1)
        #expect(frames.ofType("rate_limit").isEmpty)
        let overloaded = translator.translate(["type": "system", "subtype": "api_retry", "attempt": 3, "max_retries": 10, "retry_delay_ms": 4100,
                                               "error_status": 529, "error": "overloaded"])
        #expect(overloaded.ofType("rate_limit").first?["retry_after_ms"] == 4100, "529 is Anthropic's overload: the pool cools down")
        _ = translator.translate(["type": "result", "subtype": "success", "is_error": true, "api_error_status": 500, "result": "API Error: 500"])
        #expect(translator.verdict == .failed(message: "claude failed (HTTP 500): API Error: 500", retryable: true))
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
        // Codex counts cached tokens inside input_tokens, as OpenAI does: drover's count has them apart.
        #expect(translator.runUsage == UsageTotals(inputTokens: 315, outputTokens: 122, cacheReadTokens: 24448))
    }

    @Test func aFailedTurnAfterA429IsRetryableAfterOneRateLimitFrame() throws {
        let (frames, translator) = try Recorded.translate(CodexTranslator(), "codex", "rate-limit")
        #expect(frames.ofType("log").count == 1)
        #expect(translator.verdict == .failed(message: "codex failed: exceeded retry limit, last status: 429 Too Many Requests, request id: 9c84b52ce87fbe62-SJC", retryable: true))
        #expect(frames.ofType("rate_limit") == [["type": "rate_limit", "scope": "provider",
                                                 "message": "codex: exceeded retry limit, last status: 429 Too Many Requests, request id: 9c84b52ce87fbe62-SJC"]],
                "the error line and turn.failed say the same once")
        #expect(translator.runUsage == nil)
    }

    @Test func aUsageLimitMessageIsARateLimitAndOtherFailuresAreNot() {
        var translator = CodexTranslator()
        let frames = translator.translate(["type": "turn.failed", "error": ["message": "You've hit your usage limit. Try again in 3 hours."]])
        #expect(frames.ofType("rate_limit").count == 1)
        var other = CodexTranslator()
        #expect(other.translate(["type": "turn.failed", "error": ["message": "sandbox denied the command"]]).ofType("rate_limit").isEmpty)
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
        #expect(translator.runUsage == UsageTotals(inputTokens: 24, outputTokens: 190, cacheReadTokens: 39310, cacheWriteTokens: 3560, costUsd: 0.0262))
    }

    @Test func anAPIRateLimitIsARateLimitFrameWithItsRetryAfterThenARetryableFailure() throws {
        let (frames, translator) = try Recorded.translate(OpencodeTranslator(), "opencode", "rate-limit")
        guard case .failed(let message, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict")
            return
        }
        #expect(retryable)
        #expect(message.hasPrefix("opencode failed (APIError, HTTP 429): This request would exceed the rate limit"))
        #expect(frames.ofType("rate_limit") == [["type": "rate_limit", "retry_after_ms": 17000, "scope": "provider", "message": .string(message)]])
    }

    @Test func aRetryableAPIErrorIsARateLimitOnlyWhenItSaysSo() {
        var limited = OpencodeTranslator()
        let frames = limited.translate(["type": "error", "error": ["name": "APIError", "data": [
            "message": "Rate limit reached for requests", "isRetryable": true, "responseHeaders": ["retry-after-ms": "2500"]]]])
        #expect(frames.ofType("rate_limit").first?["retry_after_ms"] == 2500)
        var failing = OpencodeTranslator()
        let other = failing.translate(["type": "error", "error": ["name": "APIError", "data": ["message": "Internal server error", "statusCode": 500, "isRetryable": true]]])
        #expect(other.ofType("rate_limit").isEmpty)
        #expect(failing.verdict == .failed(message: "opencode failed (APIError, HTTP 500): Internal server error", retryable: true))
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

    @Test func rateLimitsAreTheRetryableFailuresThatSpeakOfALimit() {
        #expect(RetryClassifier.isRateLimit(status: 429) && RetryClassifier.isRateLimit(status: 529))
        #expect(!RetryClassifier.isRateLimit(status: 503) && !RetryClassifier.isRateLimit(status: 500) && !RetryClassifier.isRateLimit(status: nil))
        for text in ["last status: 429 Too Many Requests", "Rate limit reached", "rate_limit_error", "You've hit your usage limit",
                     "exceeded your current quota", "Overloaded", "HTTP 529"] {
            #expect(RetryClassifier.isRateLimit(text: text), "\(text)")
        }
        for text in ["Internal server error", "used 14290 tokens", "stream disconnected before completion"] {
            #expect(!RetryClassifier.isRateLimit(text: text), "\(text)")
        }
    }

    @Test func usageTotalsAddUpAndKnowACostOnlyWhenEveryPartDoes() {
        let a = UsageTotals(inputTokens: 10, outputTokens: 2, cacheReadTokens: 100, costUsd: 0.1, model: "m-1")
        let b = UsageTotals(inputTokens: 5, outputTokens: 1, cacheWriteTokens: 7, costUsd: 0.2)
        #expect(a + b == UsageTotals(inputTokens: 15, outputTokens: 3, cacheReadTokens: 100, cacheWriteTokens: 7, costUsd: 0.3, model: "m-1"))
        #expect((a + UsageTotals(inputTokens: 1)).costUsd == nil)
        #expect((a + b).frame == ["type": "usage", "input_tokens": 15, "output_tokens": 3, "cache_read_tokens": 100, "cache_write_tokens": 7,
                                  "cost_usd": 0.3, "model": "m-1"])
    }
}

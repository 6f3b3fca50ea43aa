import DroverAdapterKit
import DroverWire
import Testing

/// Streams the real Claude Code 2.1.332 printed against the tests' fake Anthropic API
/// (recorded with scripts/record-claude-stream.sh, CLAUDE_CODE_MAX_RETRIES=1), replayed
/// through the translator.
@Suite struct ClaudeRecordedStreamTests {
    @Test func aToolTurnGivesTheToolCallItsOutputAndTheUsageOfBothModelCalls() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "tool-turn")
        #expect(frames.ofType("progress").map { $0["text"]?.stringValue } == ["Bash echo hello > out.txt && cat out.txt"])
        #expect(frames.ofType("message").map { $0["role"]?.stringValue } == ["tool", "assistant"])
        #expect(frames.ofType("message").last?["text"] == "The file says hello.")
        guard case .succeeded(let text, let data)? = translator.verdict else {
            Issue.record("no success verdict: \(String(describing: translator.verdict))")
            return
        }
        #expect(text == "The file says hello.")
        #expect(data["num_turns"] == 2 && data["answers"] == nil)
        #expect(translator.runUsage == UsageTotals(inputTokens: 230, outputTokens: 28, costUsd: 0.00148, model: "claude-opus-5-5"))
        #expect(!translator.awaitsMoreAnswers)
    }

    /// A permanent 5xx: the CLI's own "API Error" text comes as an assistant message of model
    /// `<synthetic>`; no model said it, so it is a log line, not a message or the answer.
    @Test func aPermanentServerErrorIsARetryableFailureAndItsSyntheticTextIsNoMessage() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "api-error")
        #expect(frames.ofType("message").isEmpty, "\(frames)")
        let logs = frames.ofType("log").compactMap { $0["text"]?.stringValue }
        #expect(logs.contains("claude is retrying the API, attempt 1 of 1: server_error (HTTP 500)"), "\(logs)")
        #expect(logs.contains { $0.hasPrefix("claude: API Error: 500") }, "\(logs)")
        #expect(frames.ofType("rate_limit").isEmpty, "a 500 is no rate limit")
        guard case .failed(let message, let retryable)? = translator.verdict else {
            Issue.record("no failure verdict: \(String(describing: translator.verdict))")
            return
        }
        #expect(retryable && message.hasPrefix("claude failed (HTTP 500): API Error: 500"), "\(message)")
        #expect(translator.runUsage == UsageTotals(costUsd: 0), "a call that failed used nothing: \(String(describing: translator.runUsage))")
    }

    /// What a failed run had used before it failed is still its usage.
    @Test func aRunThatFailsAfterAToolCallKeepsItsUsage() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "tool-then-api-error")
        #expect(frames.ofType("progress").count == 1)
        guard case .failed(let message, true)? = translator.verdict else {
            Issue.record("no retryable failure: \(String(describing: translator.verdict))")
            return
        }
        #expect(message.hasPrefix("claude failed (HTTP 500)"))
        #expect(translator.runUsage?.inputTokens == 100 && translator.runUsage?.outputTokens == 20 && translator.runUsage?.costUsd == 0.0008,
                "\(String(describing: translator.runUsage))")
    }

    /// A 429 with retry-after 1: the CLI waits about that long itself and says so in an
    /// api_retry line, which becomes a rate_limit frame with the wait; then it succeeds.
    @Test func aRateLimitTheCLIRetriedIsARateLimitFrameThenTheAnswer() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "rate-limit-then-success")
        #expect(frames.ofType("rate_limit") == [["type": "rate_limit", "retry_after_ms": 1066, "scope": "provider",
                                                   "message": "claude is retrying the API, attempt 1 of 1: rate_limit (HTTP 429)"]])
        guard case .succeeded(let text, _)? = translator.verdict else {
            Issue.record("no success verdict: \(String(describing: translator.verdict))")
            return
        }
        #expect(text == "Answered after the limit.")
    }

    /// `run_in_background`: the CLI answers, waits for its background command, and answers
    /// again when it ends. The run's answer is the last; usage adds up; the cost is the last
    /// running total; while the command runs, more answers are due.
    @Test func aBackgroundCommandBringsASecondAnswerThatIsTheRunsAnswer() throws {
        var translator = ClaudeTranslator()
        var frames: [JSONObject] = []
        var awaitingAfterResults: [Bool] = []
        for line in try Recorded.lines("claude", "background-task") {
            frames += translator.translate(line)
            if line["type"] == "result" { awaitingAfterResults.append(translator.awaitsMoreAnswers) }
            if line["type"] == "system" && line["subtype"] == "task_started" { #expect(translator.awaitsMoreAnswers) }
        }
        // After the first result the background command still ran (the CLI printed
        // task_updated afterwards); after the second, nothing is due.
        #expect(awaitingAfterResults == [true, false])
        #expect(frames.ofType("message").filter { $0["role"] == "assistant" }.map { $0["text"]?.stringValue }
                == ["Started it; I will report when it ends.", "The background job finished: bg-done."])
        let logs = frames.ofType("log").compactMap { $0["text"]?.stringValue }
        #expect(logs.contains("claude started a background task: background job (b6oh3t6c5)"), "\(logs)")
        #expect(logs.contains { $0.hasPrefix("claude's background task b6oh3t6c5 completed: Background command \"background job\" completed (exit code 0)") }, "\(logs)")
        #expect(logs.contains("claude answered again (answer 2 of this run, after its background work)"), "\(logs)")
        guard case .succeeded(let text, let data)? = translator.verdict else {
            Issue.record("no success verdict: \(String(describing: translator.verdict))")
            return
        }
        #expect(text == "The background job finished: bg-done.")
        #expect(data["answers"] == 2 && data["cost_usd"] == 0.00042 && data["cli_total_cost_usd"] == 0.00042)
        #expect(data["usage"]?.objectValue?["input_tokens"] == 30 && data["usage"]?.objectValue?["output_tokens"] == 15, "\(data)")
        #expect(translator.runUsage == UsageTotals(inputTokens: 30, outputTokens: 15, costUsd: 0.00042, model: "claude-opus-5-5"))
    }

    /// A subscription's limit (recorded with an OAuth token; API keys get no such event): a
    /// rejected rate_limit_event with its reset, the CLI's own words about it, and a failed
    /// result with api_error_status 429, without a retry of the CLI's own.
    @Test func aSubscriptionLimitWaitsUntilItsResetAndIsRetryable() throws {
        let (frames, translator) = try Recorded.translate(ClaudeTranslator(), "claude", "usage-limit-recorded")
        let limits = frames.ofType("rate_limit")
        #expect(limits.first?["retry_after_ms"]?.intValue == 1_796_289_396_000 - Int(Recorded.nowMs), "\(limits)")
        #expect(limits.first?["message"]?.stringValue?.hasPrefix("claude hit its five_hour limit (resets in ") == true, "\(limits)")
        #expect(limits.count == 2, "the event, then the failed result: \(limits)")
        #expect(frames.ofType("message").isEmpty, "the CLI's \"You've hit your 5-hour limit\" is no model's answer")
        guard case .failed(let message, true)? = translator.verdict else {
            Issue.record("no retryable failure: \(String(describing: translator.verdict))")
            return
        }
        #expect(message == "claude failed (HTTP 429): You've hit your 5-hour limit · resets 9:16am (UTC)")
    }
}

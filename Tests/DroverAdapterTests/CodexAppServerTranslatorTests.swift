import DroverAdapterKit
import DroverWire
import Testing

/// The real Codex app-server's messages (0.159.2, recorded by DroverRealAgentTests with
/// DROVER_RECORD_CODEX_APP_SERVER under Fixtures/streams/codex-app-server/) replayed through
/// the translator: message in, frames and replies out.
@Suite struct CodexAppServerTranslatorTests {
    /// What the translator makes of a recording, fed as CodexAppServerRun feeds it: the
    /// answers to the adapter's own requests are the run's, which takes the thread's id from
    /// the thread's answer and asks for a turn at once, and for the next one as soon as a turn
    /// has ended.
    struct Replay {
        var frames: [JSONObject] = []
        var replies: [JSONObject] = []
        /// The verdict of each turn, in order.
        var verdicts: [TurnVerdict] = []
        var translator: CodexAppServerTranslator
    }

    static func replay(_ name: String, approval: CodexApproval = .decline, nowMs: Int64 = Recorded.nowMs) throws -> Replay {
        var replay = Replay(translator: CodexAppServerTranslator(approval: approval))
        for message in try Recorded.lines("codex-app-server", name) {
            if message["method"] == nil {
                if let thread = message["result"]?.objectValue?["thread"]?.objectValue?["id"]?.stringValue {
                    replay.frames += replay.translator.sawThread(thread)
                    replay.translator.beginTurn()
                }
                continue
            }
            replay.frames += replay.translator.translate(message, nowMs: nowMs)
            replay.replies += replay.translator.takeReplies()
            if message["method"] == "turn/completed", let verdict = replay.translator.verdict {
                replay.verdicts.append(verdict)
                replay.translator.beginTurn()
            }
        }
        return replay
    }

    @Test func aPlainTurnIsOneMessageAndTheAnswerWithItsUsage() throws {
        let replay = try Self.replay("plain")
        let thread = "01a23aff-be95-7b81-893a-2e649b29a334"
        #expect(replay.frames == [
            ["type": "session", "cli": "codex-app-server", "cli_session_id": .string(thread)],
            ["type": "message", "role": "assistant", "text": "The answer is 42."],
        ], "the thread is announced once, though named twice; a window 42% used is no limit")
        #expect(replay.verdicts == [.succeeded(text: "The answer is 42.", data: [
            "cli": "codex-app-server", "cli_session_id": .string(thread),
            "usage": ["input_tokens": 100, "cached_input_tokens": 30, "output_tokens": 20],
        ])])
        #expect(replay.translator.runUsage == UsageTotals(inputTokens: 70, outputTokens: 20, cacheReadTokens: 30), "drover's terms: input without the cache")
        #expect(replay.replies.isEmpty)
    }

    @Test func aCommandIsOneProgressFrameInTheModelsOwnWords() throws {
        let replay = try Self.replay("tool")
        let progress = replay.frames.ofType("progress")
        let command = "echo written-by-codex > tool-ran.txt && cat tool-ran.txt"
        #expect(progress == [["type": "progress", "tool": "shell", "input": ["command": .string(command)], "text": .string(command)]],
                "started and completed, the item is one call")
        #expect(replay.frames.ofType("message").map { $0["text"] } == ["The file holds written-by-codex."])
        #expect(replay.translator.runUsage == UsageTotals(inputTokens: 20, outputTokens: 10), "two model calls")
    }

    @Test func a429IsARetryableFailureAndOneRateLimit() throws {
        let replay = try Self.replay("rate-limit-429")
        let message = "exceeded retry limit, last status: 429 Too Many Requests"
        #expect(replay.verdicts == [.failed(message: "codex failed (HTTP 429): \(message)", retryable: true)])
        #expect(replay.frames.ofType("rate_limit") == [["type": "rate_limit", "scope": "provider", "message": .string("codex: \(message)")]],
                "the error and the failed turn say it once")
        #expect(replay.frames.ofType("log").map { $0["text"] } == [.string("codex: \(message)")])
        #expect(replay.translator.runUsage == nil, "a refused call used nothing")
    }

    @Test func aRefusedRequestIsAFailureNotRetried() throws {
        let replay = try Self.replay("failure-400")
        let body = #"{"error": {"type": "invalid_request_error", "code": "invalid_request_error", "message": "Invalid schema for function 'exec_command'"}}"#
        #expect(replay.verdicts == [.failed(message: "codex failed: \(body)", retryable: false)])
        #expect(replay.frames.ofType("rate_limit").isEmpty)
    }

    /// `account/rateLimits/updated` from the `x-codex-primary-*` headers: a window used up is
    /// a rate limit with a wait until its reset (read at the notification's own time here).
    @Test func aUsedUpWindowIsARateLimitUntilItResets() throws {
        let replay = try Self.replay("rate-limit-window", nowMs: 1_796_286_221_452)
        #expect(replay.frames.ofType("rate_limit") == [[
            "type": "rate_limit", "retry_after_ms": 118_548, "scope": "provider",
            "message": "codex: the primary rate-limit window of 300 minutes is used up (100%)",
        ]])
        #expect(replay.verdicts.count == 1 && replay.verdicts.allSatisfy { if case .succeeded = $0 { true } else { false } }, "the answer still came")
    }

    @Test(arguments: [CodexApproval.decline, .accept]) func anApprovalRequestIsAnsweredByThePolicy(_ approval: CodexApproval) throws {
        let replay = try Self.replay("approval-\(approval.rawValue)", approval: approval)
        #expect(replay.replies == [["id": 0, "result": ["decision": .string(approval.rawValue)]]])
        let verb = approval == .accept ? "accepted" : "declined"
        #expect(replay.frames.ofType("log").map { $0["text"] } == [.string("\(verb) by --approval \(approval.rawValue): /bin/bash -lc 'touch approved.txt'")])
        #expect(replay.frames.ofType("progress").map { $0["text"] } == ["touch approved.txt"])
    }

    @Test func otherRequestsAreAnsweredTooSoTheServerNeverWaits() {
        var translator = CodexAppServerTranslator()
        let frames = translator.translate(["id": 7, "method": "item/tool/requestUserInput", "params": ["questions": []]], nowMs: Recorded.nowMs)
        #expect(translator.takeReplies() == [["id": 7, "error": ["code": -32601, "message": "drover-adapter does not handle item/tool/requestUserInput"]]])
        #expect(frames.ofType("log").count == 1)
        // Asking for permissions: granting is handing back what was asked for.
        var accepting = CodexAppServerTranslator(approval: .accept)
        let asked: JSONObject = ["id": "p1", "method": "item/permissions/requestApproval", "params": ["permissions": ["network": ["enabled": true]]]]
        _ = accepting.translate(asked, nowMs: Recorded.nowMs)
        #expect(accepting.takeReplies() == [["id": "p1", "result": ["permissions": ["network": ["enabled": true]], "scope": "turn"]]])
        _ = translator.translate(asked, nowMs: Recorded.nowMs)
        #expect(translator.takeReplies() == [["id": "p1", "result": ["permissions": [:], "scope": "turn"]]])
        #expect(translator.takeReplies().isEmpty, "each reply is handed out once")
    }

    @Test func anInterruptedTurnIsNoAnswer() throws {
        let replay = try Self.replay("interrupted")
        #expect(replay.verdicts == [.failed(message: "codex's turn was interrupted", retryable: false)])
        #expect(replay.frames.ofType("progress").map { $0["text"] } == ["sleep 62"])
    }

    /// Two turns of one thread: each has its own answer, the usage adds up over both.
    @Test func turnsOfOneThreadEachEndWithTheirAnswer() throws {
        let replay = try Self.replay("follow-up")
        #expect(replay.verdicts.map { verdict -> String in
            if case .succeeded(let text, _) = verdict { return text }
            return "\(verdict)"
        } == ["First turn done.", "Second turn done."])
        #expect(replay.frames.ofType("session").count == 1)
        #expect(replay.translator.runUsage == UsageTotals(inputTokens: 30, outputTokens: 15), "three model calls over two turns")
    }

    /// On thread/resume the server repeats the thread's usage so far: earlier tasks', not
    /// this one's.
    @Test func aResumedThreadCountsOnlyItsNewTurns() throws {
        let replay = try Self.replay("resume")
        #expect(replay.frames.ofType("message").map { $0["text"] } == ["The word was apricot."])
        #expect(replay.translator.runUsage == UsageTotals(inputTokens: 10, outputTokens: 5))
        guard case .succeeded(_, let data)? = replay.verdicts.last else {
            Issue.record("no answer: \(replay.verdicts)")
            return
        }
        #expect(data["usage"] == ["input_tokens": 10, "cached_input_tokens": 0, "output_tokens": 5])
    }
}

/// `drover-adapter codex-app-server`'s own options.
@Suite struct CodexAppServerOptionsTests {
    @Test func theApprovalAndSandboxOptionsAreCodexAppServersOnly() throws {
        let defaults = try AdapterOptions.parse(["codex-app-server"])
        #expect(defaults.kind == .codexAppServer && defaults.program == "codex-app-server")
        #expect(defaults.approval == .decline && defaults.approvalPolicy == nil && defaults.sandbox == .workspaceWrite)
        let options = try AdapterOptions.parse(["codex-app-server", "--approval", "accept", "--approval-policy", "untrusted",
                                                "--sandbox", "danger-full-access", "--", "-c", "model=\"o3\""])
        #expect(options.approval == .accept && options.approvalPolicy == .untrusted && options.sandbox == .dangerFullAccess)
        #expect(options.extraArguments == ["-c", "model=\"o3\""])
        #expect(CLIKind.codexAppServer.invocation(prompt: "p", model: "m", resumeSessionID: nil, extra: options.extraArguments).arguments
                == ["-c", "model=\"o3\""], "the server's argv is the user's flags: prompts and models go over JSON-RPC")
        let refusals: [([String], String)] = [
            (["codex-app-server", "--approval", "ask"], #"--approval: "ask" is not one of decline, accept"#),
            (["codex-app-server", "--sandbox", "none"], #"--sandbox: "none" is not one of read-only, workspace-write, danger-full-access"#),
            (["codex", "--approval", "accept"], "--approval is for codex-app-server only: codex takes its permissions after --"),
            (["gemini"], #"unknown CLI kind "gemini": expected claude, opencode, codex or codex-app-server"#),
        ]
        for (arguments, message) in refusals {
            do {
                _ = try AdapterOptions.parse(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                #expect(error.description == message)
            }
        }
    }
}

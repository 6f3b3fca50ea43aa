import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The mock agent's attempt, rate-limit and usage directives (SPEC section 10): driven
/// directly over its pipes (any attempt number), and under real drover.
@Suite struct MockAgentAttemptTests {
    static let mockAgent = FileSystem.executableDirectory() + "/drover-mock-agent"

    /// Runs the mock agent on `prompt` as attempt `attempt` (nil: no `attempt` in the start
    /// frame); returns the frames after hello and the exit status.
    func run(_ prompt: String, attempt: Int?) throws -> (frames: [JSONObject], status: Int32?) {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let agent = try FramedProcess([Self.mockAgent], stderr: folder + "/stderr")
        var start: JSONObject = [
            "type": "start", "protocol": 1, "task_id": "bg_0000000a", "session_id": "ses_0000000a", "agent": "mock",
            "provider": "mock", "model": "m", "description": "", "prompt": .string(prompt), "resume": false, "workdir": .string(folder),
        ]
        if let attempt { start["attempt"] = .number(Double(attempt)) }
        try agent.send(start)
        let frames = try agent.rest(timeoutMs: 10_000)
        let status = agent.waitForExit(timeoutMs: 5_000)
        #expect(frames.first?["type"] == "hello")
        return (Array(frames.dropFirst()), status)
    }

    @Test func failAttemptsRefusesTheFirstNAttemptsAsARateLimitThenGoesOn() throws {
        let prompt = "@fail-attempts 2 300ms\n@attempt\n@result done"
        for attempt in [1, 2] {
            let (frames, status) = try run(prompt, attempt: attempt)
            #expect(frames == [
                ["type": "rate_limit", "retry_after_ms": 300, "scope": "provider", "message": .string("mock rate limit on attempt \(attempt) of 2 failing")],
                ["type": "error", "message": .string("rate limited on attempt \(attempt) (fails attempts 1 to 2)"), "retryable": true],
            ], "attempt \(attempt)")
            #expect(status == 1, "attempt \(attempt) exits 1")
        }
        let (frames, status) = try run(prompt, attempt: 3)
        #expect(frames == [["type": "message", "role": "assistant", "text": "attempt 3"], ["type": "result", "text": "done"]])
        #expect(status == 0)
    }

    @Test func withoutAnAttemptInTheStartFrameItIsAttemptOne() throws {
        let (frames, status) = try run("@attempt\n@fail-attempts 1", attempt: nil)
        #expect(frames.map { $0["type"]?.stringValue } == ["message", "rate_limit", "error"])
        #expect(frames.first?["text"] == "attempt 1")
        #expect(frames[1]["retry_after_ms"] == nil, "no duration given: no retry_after_ms")
        #expect(status == 1)
        // Zero failing attempts: nothing is refused.
        #expect(try run("@fail-attempts 0\n@result fine", attempt: nil).frames == [["type": "result", "text": "fine"]])
    }

    @Test func rateLimitAndUsageSendTheirFramesAndGoOn() throws {
        let (frames, status) = try run("@rate-limit 2s\n@rate-limit\n@usage 1200 340\n@usage 2500 610 0.0185\n@message still here", attempt: 1)
        #expect(frames == [
            ["type": "rate_limit", "retry_after_ms": 2000, "scope": "provider", "message": "mock rate limit"],
            ["type": "rate_limit", "scope": "provider", "message": "mock rate limit"],
            ["type": "usage", "input_tokens": 1200, "output_tokens": 340],
            ["type": "usage", "input_tokens": 2500, "output_tokens": 610, "cost_usd": 0.0185],
            ["type": "message", "role": "assistant", "text": "still here"],
            ["type": "result", "text": "still here"],
        ])
        #expect(status == 0)
    }

    @Test func badArgumentsAreAnErrorNamingTheDirective() throws {
        for (prompt, message) in [
            ("@fail-attempts many", "usage: @fail-attempts N [D]"),
            ("@fail-attempts 1 soon", "bad duration in @fail-attempts 1 soon"),
            ("@usage 10", "usage: @usage IN OUT [COST]"),
            ("@usage 10 -3", "usage: @usage IN OUT [COST]"),
            ("@usage 10 3 free", "bad cost in @usage 10 3 free"),
            ("@rate-limit later", "bad duration in @rate-limit later"),
        ] {
            let (frames, status) = try run(prompt, attempt: 1)
            #expect(frames == [["type": "error", "message": .string(message), "retryable": false]], "\(prompt)")
            #expect(status == 2, "\(prompt)")
        }
    }

    /// Under drover: the frames of the first attempt land in the transcript, and drover reads
    /// them (a frame it could not decode would end the task as error(protocol)). Written to
    /// hold whether or not this drover retries: it checks what the first attempt sent.
    @Test func underDroverTheFirstAttemptsFramesAreInTheTranscript() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let outcome = try runBatch(in: folder, config: config(agents: [agent("mock", [Self.mockAgent], provider: "mock")]), manifest: [
            #"{"agent": "mock", "prompt": "@attempt\n@echo-env DROVER_ATTEMPT\n@usage 100 20 0.004\n@fail-attempts 1 300ms\n@result recovered"}"#,
            #"{"agent": "mock", "prompt": "@rate-limit 1s\n@usage 7 3\n@result fine"}"#,
        ])
        let first = try firstAttempt(outcome.transcript(1)).filter { $0["dir"] == "in" && $0["type"] != "hello" }
        #expect(first.map { $0["type"]?.stringValue ?? "" } == ["message", "message", "usage", "rate_limit", "error"])
        #expect(first[0]["text"] == "attempt 1" && first[1]["text"] == "1", "the start frame and DROVER_ATTEMPT agree: \(first)")
        #expect(first[2]["input_tokens"] == 100 && first[2]["output_tokens"] == 20 && first[2]["cost_usd"] == 0.004)
        #expect(first[3]["retry_after_ms"] == 300 && first[3]["scope"] == "provider")
        #expect(first[4]["retryable"] == true)
        let task = outcome.task(1)
        if task["attempt"]?.intValue ?? 1 > 1 {
            // A drover that retries: the second attempt went past the directive.
            #expect(task["status"] == "completed" && outcome.result(1) == "recovered", "\(task)")
        } else {
            #expect(task["status"] == "error" && task["reason"] == "worker_error" && task["exit_code"] == 1, "\(task)")
            #expect(task["error"]?.stringValue == "rate limited on attempt 1 (fails attempts 1 to 1) (retryable)")
        }
        // A rate limit the worker rides out does not end its attempt.
        let second = outcome.task(2)
        #expect(second["status"] == "completed" && outcome.result(2) == "fine", "\(second)")
        #expect(try outcome.transcript(2).contains { $0["type"] == "rate_limit" && $0["retry_after_ms"] == 1000 })
        outcome.expectNoWorkerLeft()
    }
}

/// The transcript lines of a task's first attempt: up to its second `start` frame.
func firstAttempt(_ transcript: [JSONObject]) -> [JSONObject] {
    var lines: [JSONObject] = []
    var starts = 0
    for line in transcript {
        if line["dir"] == "out" && line["type"] == "start" {
            starts += 1
            if starts == 2 { break }
        }
        lines.append(line)
    }
    return lines
}

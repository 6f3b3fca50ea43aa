import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// drover-adapter under real drover (`drover run`), against the stand-in CLI replaying
/// recorded streams: real processes, pipes and signals.
@Suite struct AdapterBatchTests {
    @Test func eachCLISucceedsWithToolCallsUsageAndItsSessionID() throws {
        let f = try AdapterFixture()
        let (run, tasks) = try f.run([
            ("fake-claude", "explain the frame decoder\nfake: replay=success"),
            ("fake-opencode", "explain the frame decoder\nfake: replay=success"),
            ("fake-codex", "explain the frame decoder\nfake: replay=success"),
        ])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let expected: [(cli: String, session: String, answer: String)] = [
            ("claude", "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b", "The decoder reads a 4-byte big-endian length"),
            ("opencode", "ses_494719016ffe85dkDMj0FPRbHK", "FrameDecoder (Sources/DroverWire/Frame.swift) reads"),
            ("codex", "0199a213-81c0-7800-8aa1-bbab2a035a53", "FrameDecoder reads a 4-byte big-endian length"),
        ]
        for (line, want) in expected.enumerated() {
            let task = try #require(tasks[line + 1])
            #expect(task.status == "completed" && task.reason == "result", "\(want.cli): \(task.errorText)")
            #expect(f.resultText(task).hasPrefix(want.answer), "\(want.cli)")
            let data = try #require(task.resultData, "\(want.cli) result has data")
            #expect(data["cli"]?.stringValue == want.cli)
            #expect(data["cli_session_id"]?.stringValue == want.session)
            #expect(data["usage"]?.objectValue != nil, "\(want.cli) usage")
            #expect(data["turns"] == 1)
            #expect(task["progress"]?.objectValue?["tool_calls"]?.intValue == 2, "\(want.cli) tool calls")
            let transcript = try f.transcript(task)
            #expect(transcript.first { $0["dir"] == "in" }?["type"] == "hello")
            #expect(transcript.contains { $0["type"] == "session" && $0["cli_session_id"]?.stringValue == want.session })
        }
        #expect(tasks[1]?.resultData?["cost_usd"] == .number(0.0423))
        #expect(tasks[2]?.resultData?["cost_usd"] == .number(0.0262))
        // What each CLI reported of its usage reached drover as `usage` frames, in drover's terms
        // (input without cached tokens), the last one before the result holding the totals.
        let usage: [JSONObject] = [
            ["type": "usage", "input_tokens": 12, "output_tokens": 402, "cache_read_tokens": 35862, "cache_write_tokens": 6021,
             "cost_usd": 0.0423, "model": "claude-sonnet-4-5-20250929"],
            ["type": "usage", "input_tokens": 24, "output_tokens": 190, "cache_read_tokens": 39310, "cache_write_tokens": 3560, "cost_usd": 0.0262],
            ["type": "usage", "input_tokens": 315, "output_tokens": 122, "cache_read_tokens": 24448, "cache_write_tokens": 0],
        ]
        for (line, want) in usage.enumerated() {
            let frames = try f.transcript(try #require(tasks[line + 1])).filter { $0["dir"] == "in" }
            let last = frames.lastIndex { $0["type"] == "usage" }
            #expect(last.map { frames[$0].frameOnly } == want, "line \(line + 1): \(frames.ofType("usage"))")
            #expect(last.map { $0 < frames.count - 1 && frames[frames.count - 1]["type"] == "result" } == true, "usage comes before the result")
        }
        #expect(try f.transcript(try #require(tasks[2])).ofType("usage").count == 3, "opencode: one a step")
        // What each CLI was given: its stream flags, the prompt where it reads it, the task's folder.
        let runs = f.cliRuns()
        #expect(runs.count == 3)
        for cliRun in runs {
            let argv = cliRun["argv"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(cliRun["prompt"]?.stringValue == "explain the frame decoder\nfake: replay=success")
            #expect(cliRun["cwd"]?.stringValue == FileSystem.realPath(f.folder))
            switch cliRun["cli"]?.stringValue {
            case "claude": #expect(argv == ["-p", "--output-format", "stream-json", "--verbose"])
            case "opencode": #expect(argv == ["run", "--format", "json"])
            default: #expect(argv == ["exec", "--json", "--", "explain the frame decoder\nfake: replay=success"])
            }
            // Its own process group, not drover's worker's.
            #expect(cliRun["pgid"] == cliRun["pid"])
        }
        f.expectNothingLeft(Array(tasks.values))
    }

    /// A prompt longer than exec allows in one argument reaches Codex whole, on stdin.
    @Test func aLongCodexPromptGoesThroughStdin() throws {
        let f = try AdapterFixture()
        let prompt = "fake: replay=success\n" + String(repeating: "context line, ", count: 15_000)
        let (run, tasks) = try f.run([("fake-codex", prompt)])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let task = try #require(tasks[1])
        #expect(task.status == "completed", "\(task.errorText)")
        let cliRun = try #require(f.cliRuns().first)
        #expect(cliRun["argv"]?.arrayValue?.compactMap(\.stringValue) == ["exec", "--json", "--", "-"])
        #expect(cliRun["prompt"]?.stringValue == prompt)
        f.expectNothingLeft(Array(tasks.values))
    }

    @Test func rateLimitsEndAsRetryableErrors() throws {
        let f = try AdapterFixture()
        // Each row: the agent, the recorded stream, and the waits of the rate_limit frames it
        // should bring about (nil: the line named none).
        let cases: [(agent: String, replay: String, waits: [Int?])] = [
            ("fake-claude", "rate-limit", [1100, nil]),  // an api_retry after a 429, then the failed result
            ("fake-opencode", "rate-limit", [17000]),  // APIError 429 with retry-after: 17
            ("fake-codex", "rate-limit", [nil]),  // the error line and turn.failed say the same once
            ("fake-opencode", "rate-limit-retryable", [2500]),  // no status: retryable, and it says rate limit
            ("fake-codex", "usage-limit", [nil]),
        ]
        let (run, tasks) = try f.run(cases.map { ($0.agent, "fake: replay=\($0.replay) exit=1") })
        #expect(run.status == 1)
        for (index, c) in cases.enumerated() {
            let task = try #require(tasks[index + 1])
            #expect(task.status == "error" && task.reason == "worker_error", "\(c)")
            #expect(task.errorText.hasSuffix("(retryable)"), "\(task.errorText)")
            // drover heard of the limit before the end, with the wait the line gave.
            let frames = try f.transcript(task).filter { $0["dir"] == "in" }
            let limits = frames.ofType("rate_limit")
            #expect(limits.map { $0["retry_after_ms"]?.intValue } == c.waits, "\(c.agent) \(c.replay): \(limits)")
            #expect(limits.allSatisfy { $0["scope"] == "provider" && $0["message"]?.stringValue?.isEmpty == false })
            let end = try #require(frames.lastIndex { $0["type"] == "error" })
            #expect(end == frames.count - 1 && frames[end]["retryable"] == true)
            #expect((frames.lastIndex { $0["type"] == "rate_limit" } ?? end) < end, "\(c.agent) \(c.replay): the limit is told before the end")
        }
        for line in 1...3 { #expect(tasks[line]?.errorText.contains("429") == true, "\(tasks[line]?.errorText ?? "")") }
        #expect(tasks[1]?.errorText.hasPrefix("claude failed (HTTP 429): API Error: 429") == true)
        #expect(tasks[5]?.errorText == "codex failed: You've hit your usage limit. Try again in 2 hours 13 minutes. (retryable)")
        f.expectNothingLeft(Array(tasks.values))
    }

    /// The CLI retries by itself only as often as the adapter lets it, so that drover's backoff,
    /// shared by the whole pool, governs: CLAUDE_CODE_MAX_RETRIES is 1 unless the agent says
    /// otherwise (`--cli-retries`, or the variable in its environment).
    @Test func claudeRetriesLittleByItselfAndItsLimitsReachDrover() throws {
        let f = try AdapterFixture(extraAgents: """
            "claude-retries-4": { "command": ["drover-adapter", "claude", "--program", "{stand_in}", "--cli-retries", "4"],
                                  "provider": "anthropic", "env": { "FAKE_CLI_LOG": "{cli_log}" } },
            "claude-env-9": { "command": ["drover-adapter", "claude", "--program", "{stand_in}"],
                              "provider": "anthropic", "env": { "FAKE_CLI_LOG": "{cli_log}", "CLAUDE_CODE_MAX_RETRIES": "9" } }
            """)
        let (_, tasks) = try f.run([
            ("fake-claude", "fake: replay=rate-limit-one-retry exit=1"),
            ("claude-retries-4", "fake: replay=success"),
            ("claude-env-9", "fake: replay=success"),
            ("fake-codex", "fake: replay=success"),
            ("fake-claude", "fake: replay=usage-limit exit=1"),
        ])
        let byAgent = f.cliRuns().map { ($0["cli"]?.stringValue ?? "", $0["max_retries"]?.stringValue) }
        #expect(byAgent.filter { $0.0 == "claude" }.compactMap(\.1).sorted() == ["1", "1", "4", "9"], "\(byAgent)")
        #expect(byAgent.filter { $0.0 == "codex" }.allSatisfy { $0.1 == nil }, "only Claude Code is told")

        let refused = try #require(tasks[1])
        #expect(refused.status == "error" && refused.errorText.hasPrefix("claude failed (HTTP 429): API Error: 429") && refused.errorText.hasSuffix("(retryable)"))
        #expect(try f.transcript(refused).ofType("rate_limit").map { $0["retry_after_ms"]?.intValue } == [1150, nil])
        // A subscription's limit waits until it resets.
        let limited = try #require(tasks[5])
        #expect(limited.status == "error" && limited.errorText == "claude failed: Claude AI usage limit reached (retryable)", "\(limited.errorText)")
        let limits = try f.transcript(limited).ofType("rate_limit")
        let wait = try #require(limits.first?["retry_after_ms"]?.intValue, "\(limits)")
        let untilReset = 4_102_444_800_000 - Int(Clock.wallMs())
        #expect(limits.count == 1 && wait <= untilReset + 60_000 && wait >= untilReset - 60_000, "\(wait) ms")
        f.expectNothingLeft(Array(tasks.values))
    }

    @Test func crashesAndBadStreamsEndAsErrorsThatShowTheEvidence() throws {
        let f = try AdapterFixture()
        let (_, tasks) = try f.run([
            ("fake-claude", "fake: replay=crash signal=ABRT stderr=FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"),
            ("fake-codex", "fake: replay=crash exit=101 stderr=thread 'main' panicked at core/src/codex.rs:412:9"),
            ("fake-opencode", "fake: replay=crash signal=SEGV"),
            ("fake-claude", "fake: replay=malformed"),
            ("fake-codex", "fake: replay=malformed"),
            ("fake-opencode", "fake: replay=malformed exit=1"),
        ])
        for line in 1...6 {
            #expect(tasks[line]?.status == "error" && tasks[line]?.reason == "worker_error", "line \(line): \(tasks[line]?.errorText ?? "missing")")
        }
        #expect(tasks[1]?.errorText == "claude was killed by signal 6 (SIGABRT) without a final answer; its stderr ends: FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory")
        #expect(tasks[2]?.errorText == "codex exited with status 101 without a final answer; its stderr ends: thread 'main' panicked at core/src/codex.rs:412:9")
        #expect(tasks[3]?.errorText == "opencode was killed by signal 11 (SIGSEGV) without a final answer (its stderr was empty)")
        let claude = tasks[4]?.errorText ?? ""
        #expect(claude.hasPrefix("claude wrote a line that is not valid JSON (unterminated string at byte 173): `{\"type\":\"assistant\""), "\(claude)")
        #expect(claude.contains("(the first 200 of its 206 bytes)") || claude.hasSuffix("The decoder rea`"), "\(claude)")
        #expect(tasks[5]?.errorText.hasPrefix("codex wrote its last line (cut off: no newline at the end) that is not valid JSON") == true)
        #expect(tasks[5]?.errorText.hasSuffix("\"text\":\"FrameDecoder reads a 4-by`") == true)
        #expect(tasks[6]?.errorText.contains("`{\"type\":\"step_finish\"") == true)
        // The tool calls made before the crash still count; nothing after a bad line does.
        #expect(tasks[1]?["progress"]?.objectValue?["tool_calls"]?.intValue == 1)
        #expect(tasks[4]?["progress"]?.objectValue?["tool_calls"]?.intValue == 1)
        f.expectNothingLeft(Array(tasks.values))
    }

    @Test func aMissingCLIIsAClearError() throws {
        let f = try AdapterFixture(extraAgents: """
            "no-claude": { "command": ["drover-adapter", "claude", "--program", "no-such-claude-cli"] },
            "gone-codex": { "command": ["drover-adapter", "codex", "--program", "/nonexistent/bin/codex"] }
            """)
        let (_, tasks) = try f.run([("no-claude", "hello"), ("gone-codex", "hello")])
        let notFound = tasks[1]?.errorText ?? ""
        #expect(notFound.hasPrefix("claude not found: no executable \"no-such-claude-cli\" on PATH ("), "\(notFound)")
        #expect(notFound.contains("--program /path/to/claude"))
        #expect(tasks[2]?.errorText == "cannot start /nonexistent/bin/codex: no such file or directory (ENOENT)")
        #expect(tasks.values.allSatisfy { $0.reason == "worker_error" })
    }

    @Test func heartbeatsGoOutWhileTheCLIIsQuiet() throws {
        let f = try AdapterFixture(heartbeat: "100ms")
        let (_, tasks) = try f.run([("fake-claude", "fake: replay=silent sleep=1")])
        let task = try #require(tasks[1])
        #expect(task.errorText == "claude exited with status 0 without a final answer (its stderr was empty)")
        let heartbeats = try f.transcript(task).filter { $0["type"] == "heartbeat" }.count
        #expect(heartbeats >= 4, "\(heartbeats) heartbeats in a quiet second")
        f.expectNothingLeft([task])
    }
}

extension FileSystem {
    /// The path with symbolic links resolved (what a child's getcwd reports).
    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// drover-adapter driven through the daemon: `continue` resumes the CLI's own conversation,
/// follow-up prompts run as resumed turns, and `cancel` leaves no process behind.
@Suite struct AdapterDaemonTests {
    @Test func continueResumesTheSameCLIConversation() throws {
        let f = try AdapterFixture()
        let expected: [(cli: String, session: String, resumeArguments: [String], answer: String)] = [
            ("claude", "9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b", ["--resume=9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b"], "Earlier I found the decoder"),
            ("opencode", "ses_494719016ffe85dkDMj0FPRbHK", ["--session", "ses_494719016ffe85dkDMj0FPRbHK"], "As found before"),
            ("codex", "0199a213-81c0-7800-8aa1-bbab2a035a53", ["resume", "0199a213-81c0-7800-8aa1-bbab2a035a53"], "Continuing: the tests"),
        ]
        var ids: [String] = []
        for want in expected {
            let first = try f.ok(["launch", "--agent", "fake-\(want.cli)", "--prompt", "fake: replay=success"])
            _ = try f.ok(["output", first, "--wait", "--timeout", "10s"])
            let session = try #require(try f.task(first)["session_id"]?.stringValue)
            let result = try f.drover(["continue", session, "--prompt", "and the tests?\nfake: replay=resume", "--wait"])
            #expect(result.status == 0, "\(want.cli): \(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains(want.answer), "\(want.cli): \(result.stdout)")
            let runs = f.cliRuns().filter { $0["cli"]?.stringValue == want.cli }
            #expect(runs.count == 2)
            let resumed = runs.last?["argv"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(resumed.hasRun(want.resumeArguments), "\(want.cli) resumed with \(resumed)")
            let fresh = runs.first?["argv"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(!fresh.hasRun(want.resumeArguments), "the first run starts a new conversation")
            ids.append(first)
            if want.cli == "claude" {
                // Claude Code's cost runs over the conversation: the resumed task costs the
                // difference from where the first one left it (the cli_cost frame it sent).
                let second = try f.task(try #require(FileSystem.list(f.state + "/tasks").first { $0 != first }))
                #expect(try f.task(first)["result_data"]?.objectValue?["cost_usd"] == 0.0423)
                #expect(second["result_data"]?.objectValue?["cost_usd"] == 0.0107, "\(second)")
                let transcript = try readLines(f.state + "/tasks/\(second["id"]?.stringValue ?? "?")/transcript.jsonl")
                #expect(transcript.last { $0["type"] == "usage" }?["cost_usd"] == 0.0107)
                // And so does the task's own usage, which budgets count.
                let firstUsage = try f.task(first)["usage"]?.objectValue?["cost_usd"]
                #expect(second["usage"]?.objectValue?["cost_usd"] == 0.0107 && firstUsage == 0.0423)
            }
        }
        let tasks = try ids.map { try f.task($0) }
        f.expectNothingLeft(tasks)
    }

    @Test func aFollowUpPromptRunsAsAResumedTurnBeforeTheResult() throws {
        let f = try AdapterFixture()
        // Eight lines 150 ms apart: the follow-up arrives while the first turn runs.
        let id = try f.ok(["launch", "--agent", "fake-claude", "--prompt", "fake: replay=success delay_ms=150"])
        #expect(eventually(withinMs: 5000) { f.cliRuns().count == 1 })
        let session = try #require(try f.task(id)["session_id"]?.stringValue)
        let delivered = try f.ok(["continue", session, "--prompt", "and the tests?\nfake: replay=resume"])
        #expect(delivered == id, "a running session takes the prompt")
        let output = try f.drover(["output", id, "--wait", "--timeout", "10s"])
        #expect(output.status == 0, "\(output.stdout) \(output.stderr)")
        #expect(output.stdout.contains("Earlier I found the decoder"), "the last turn's answer is the result")
        let runs = f.cliRuns()
        #expect(runs.count == 2)
        #expect(runs.last?["argv"]?.arrayValue?.contains("--resume=9f3c2b1e-4d5a-4c8e-9b7f-2a1d3e4f5a6b") == true)
        #expect(runs.last?["prompt"]?.stringValue == "and the tests?\nfake: replay=resume")
        let task = try f.task(id)
        let data = try #require(task["result_data"]?.objectValue)
        #expect(data["turns"] == 2)
        #expect(data["cost_usd"] == .number(0.053), "costs add up over the turns")
        let transcript = try readLines(f.state + "/tasks/\(id)/transcript.jsonl")
        #expect(transcript.contains { $0["dir"] == "in" && $0["type"] == "message" && $0["role"] == "user" && $0["text"] == "and the tests?\nfake: replay=resume" })
        #expect(transcript.filter { $0["type"] == "session" }.count == 1, "the same CLI session is not announced twice")
        f.expectNothingLeft([task])
    }

    @Test func cancelStopsTheCLIAndEverythingItStarted() throws {
        let f = try AdapterFixture()
        let id = try f.ok(["launch", "--agent", "fake-claude", "--prompt", "fake: replay=silent grandchild=1 sleep=60"])
        #expect(eventually(withinMs: 5000) { f.cliRuns().first?["grandchild"] != nil })
        let run = try #require(f.cliRuns().first)
        let cli = Int32(try #require(run["pid"]?.intValue))
        let grandchild = Int32(try #require(run["grandchild"]?.intValue))
        #expect(Processes.isAlive(cli) && Processes.isAlive(grandchild))
        _ = try f.ok(["cancel", id])
        let task = try f.task(id)
        #expect(task["status"] == "cancelled" && task["reason"] == "user")
        // No signal: the adapter stopped its CLI and left by itself, before drover's killGrace
        // ran out (its SIGKILL would show here).
        #expect(task["signal"] == nil || task["signal"] == .null, "the adapter left on its own, not by a signal (\(task["signal"] ?? .null))")
        f.expectNothingLeft([task])
        #expect(!Processes.isAlive(grandchild))
    }
}

extension Array where Element == String {
    /// Whether `run` stands in this argv, in order and adjacent.
    func hasRun(_ run: [String]) -> Bool {
        guard !run.isEmpty, run.count <= count else { return run.isEmpty }
        return (0...(count - run.count)).contains { Array(self[$0..<($0 + run.count)]) == run }
    }
}

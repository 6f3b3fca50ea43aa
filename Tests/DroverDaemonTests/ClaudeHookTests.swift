import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover hook claude` run as Claude Code runs it: a process with the hook input on stdin,
/// against a real daemon with mock-agent tasks, and a transcript written the way Claude
/// Code writes it.
@Suite struct ClaudeHookTests {
    /// A Claude session seen from the hook: its id, its transcript, the fixture's daemon.
    final class Session {
        let d: DaemonFixture
        let id: String
        let transcript: String
        private var calls = 0

        init(_ d: DaemonFixture, id: String = "0c6f1e0a-5d7b-4b55-9a51-2b4e5b7c9d10") throws {
            self.d = d
            self.id = id
            transcript = d.folder + "/transcript-\(id.count).jsonl"
            try FileSystem.writeFile(transcript, [])
        }

        /// Runs the hook for `event` with extra input members; returns its outcome.
        func hook(_ event: String, _ members: JSONObject = [:], arguments: [String] = []) throws -> HookResult {
            var input: JSONObject = ["session_id": .string(id), "transcript_path": .string(transcript), "cwd": .string(d.folder), "hook_event_name": .string(event)]
            for (key, value) in members.members { input[key] = value }
            return try runHook(JSONWriter.string(.object(input)), in: d, arguments: arguments)
        }

        /// The tool result of a drover MCP tool, appended to the transcript as Claude Code does.
        func appendToolResult(_ text: String) throws {
            calls += 1
            let line: JSONObject = [
                "type": "user", "isSidechain": false,
                "message": ["role": "user", "content": [["tool_use_id": .string("toolu_\(calls)"), "type": "tool_result", "content": [["type": "text", "text": .string(text)]]]]],
                "toolUseResult": [["type": "text", "text": .string(text)]],
            ]
            try FileSystem.append(transcript, Array((JSONWriter.string(.object(line)) + "\n").utf8))
        }

        /// What the model says (never a tool result), appended to the transcript.
        func appendAssistantText(_ text: String) throws {
            let line: JSONObject = ["type": "assistant", "message": ["role": "assistant", "content": [["type": "text", "text": .string(text)]]]]
            try FileSystem.append(transcript, Array((JSONWriter.string(.object(line)) + "\n").utf8))
        }
    }

    static func launchText(_ id: String) -> String {
        "Background task launched successfully.\n\nTask ID: \(id)\nSession ID: ses_00000000\nDescription: x\nAgent: explore\nStatus: running"
    }

    /// The additionalContext of a PostToolUse or UserPromptSubmit answer.
    static func context(_ result: HookResult, event: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        #expect(result.status == 0, "\(result.stderr)", sourceLocation: sourceLocation)
        let output = try parseObject(result.stdout)
        let specific = try #require(output["hookSpecificOutput"]?.objectValue, sourceLocation: sourceLocation)
        #expect(specific["hookEventName"]?.stringValue == event, sourceLocation: sourceLocation)
        return try #require(specific["additionalContext"]?.stringValue, sourceLocation: sourceLocation)
    }

    /// The reason of a blocked Stop.
    static func blockReason(_ result: HookResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        #expect(result.status == 0, "\(result.stderr)", sourceLocation: sourceLocation)
        let output = try parseObject(result.stdout)
        #expect(output["decision"] == "block", sourceLocation: sourceLocation)
        return try #require(output["reason"]?.stringValue, sourceLocation: sourceLocation)
    }

    static func expectSilent(_ result: HookResult, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 0 && result.stdout.isEmpty, "exit \(result.status), stdout \(result.stdout), stderr \(result.stderr)", sourceLocation: sourceLocation)
    }

    // MARK: tests

    @Test func postToolUseTellsEachEndOfTheSessionOnce() throws {
        let d = try DaemonFixture()
        let session = try Session(d)
        // Launched in the session: one seen in the transcript, one only in the answer of the
        // tool just used (Claude Code writes that to the transcript after PostToolUse).
        let first = try d.launch("@sleep 1s\n@result first", ["--description", "first job"])
        try session.appendToolResult(Self.launchText(first))
        let second = try d.launch("@hang", agent: "oracle", ["--description", "second job"])
        // Launched elsewhere: not the session's to hear about.
        let other = try d.launch("@result other")
        let launchedNow = try session.hook("PostToolUse", ["tool_name": "mcp__drover__delegate_task", "tool_input": [:],
                                                           "tool_response": [["type": "text", "text": .string(Self.launchText(second))]]])
        Self.expectSilent(launchedNow)

        #expect(eventually(withinMs: 10_000) { (try? d.status(first)) == "completed" && (try? d.status(other)) == "completed" })
        let told = try Self.context(try session.hook("PostToolUse", ["tool_name": "Bash", "tool_response": ["stdout": ""]]), event: "PostToolUse")
        #expect(told.hasPrefix("drover: background tasks of this Claude session ended:\n"), "\(told)")
        #expect(told.contains("- \(first) \"first job\" (agent explore) ended: completed. Read its result with background_output, task_id \"\(first)\"."), "\(told)")
        #expect(!told.contains(second) && !told.contains(other), "\(told)")
        // Told once.
        Self.expectSilent(try session.hook("PostToolUse", ["tool_name": "Read"]))

        _ = try d.ok(["cancel", second])
        let atPrompt = try Self.context(try session.hook("UserPromptSubmit", ["prompt": "next"]), event: "UserPromptSubmit")
        #expect(atPrompt.contains("- \(second) \"second job\" (agent oracle) ended: cancelled (user)."), "\(atPrompt)")
        #expect(!atPrompt.contains(first))
        Self.expectSilent(try session.hook("UserPromptSubmit", ["prompt": "again"]))
        // Another session of the same daemon has its own record.
        let otherSession = try Session(d, id: "another-session")
        Self.expectSilent(try otherSession.hook("Stop"))
    }

    @Test func endsTheModelWasToldInDroverAnswersAreNotRepeated() throws {
        let d = try DaemonFixture()
        let session = try Session(d)
        let read = try d.launch("@sleep 1s\n@result read by the model")
        let reported = try d.launch("@sleep 1s\n@result reported by the server")
        let cancelled = try d.launch("@hang")
        for id in [read, reported, cancelled] { try session.appendToolResult(Self.launchText(id)) }
        // The model quoting an id is not a launch.
        try session.appendAssistantText(Self.launchText("bg_0000abcd"))
        Self.expectSilent(try session.hook("PostToolUse", ["tool_name": "Bash"]))
        #expect(eventually(withinMs: 10_000) { (try? d.status(read)) == "completed" && (try? d.status(reported)) == "completed" })
        _ = try d.ok(["cancel", cancelled])

        // What drover's answers said: a result, an end reported at the head of an answer,
        // a cancellation.
        try session.appendToolResult("Task Result\n\nTask ID: \(read)\nDescription: x\n\n---\n\nread by the model")
        try session.appendToolResult("Cancelled 1 background task(s):\n\n| Task ID | Description | Status | Session ID |\n|---|---|---|---|\n| \(cancelled) | x | cancelled (user) | ses_00000000 |")
        let head = "Background tasks that ended since drover's previous answer:\n- \(reported) \"x\" (agent explore) ended: completed. Read its result with background_output, task_id \"\(reported)\".\n\n---\n\nTask Status"
        let result = try session.hook("PostToolUse", ["tool_name": "mcp__tasks__background_output", "tool_response": [["type": "text", "text": .string(head)]]])
        Self.expectSilent(result)
        Self.expectSilent(try session.hook("Stop", ["stop_hook_active": false]))
    }

    @Test func stopIsBlockedWhileTasksRunAtMostSoManyTimesPerPrompt() throws {
        let d = try DaemonFixture()
        let session = try Session(d)
        let running = try d.launch("@hang", ["--description", "long job"])
        try session.appendToolResult(Self.launchText(running))
        let limit = ["--stop-blocks", "2"]

        for left in [1, 0] {
            let reason = try Self.blockReason(try session.hook("Stop", ["stop_hook_active": .bool(left == 0)], arguments: limit))
            #expect(reason.contains("drover: background tasks of this Claude session have not ended yet:\n- \(running) \"long job\" (agent explore): running"), "\(reason)")
            #expect(reason.contains("background_output with task_id \"\(running)\" and block: true"), "\(reason)")
            #expect(reason.contains(left > 0 ? "at most 1 more time(s)" : "will not keep this session from stopping again"), "\(reason)")
        }
        // Bounded: the session may end although the task runs.
        let third = try session.hook("Stop", ["stop_hook_active": true], arguments: limit)
        Self.expectSilent(third)
        #expect(third.stderr.contains("letting the session stop with 1 drover task(s) not ended"), "\(third.stderr)")

        // A new prompt, new chances; an end not told yet is told at the stop.
        Self.expectSilent(try session.hook("UserPromptSubmit", ["prompt": "go on"], arguments: limit))
        _ = try Self.blockReason(try session.hook("Stop", ["stop_hook_active": false], arguments: limit))
        _ = try d.ok(["cancel", running])
        let ended = try Self.blockReason(try session.hook("Stop", ["stop_hook_active": true], arguments: limit))
        #expect(ended.contains("- \(running) \"long job\" (agent explore) ended: cancelled (user)."), "\(ended)")
        #expect(!ended.contains("have not ended yet"), "\(ended)")
        // Nothing left to tell: the session stops.
        Self.expectSilent(try session.hook("Stop", ["stop_hook_active": true], arguments: limit))
    }

    @Test func stopIsBlockedForAtMostTheWaitGiven() throws {
        let d = try DaemonFixture()
        let session = try Session(d)
        let running = try d.launch("@hang")
        try session.appendToolResult(Self.launchText(running))
        let limit = ["--stop-wait", "1s"]
        _ = try Self.blockReason(try session.hook("Stop", arguments: limit))
        _ = try Self.blockReason(try session.hook("Stop", arguments: limit))
        usleep(1_100_000)
        Self.expectSilent(try session.hook("Stop", arguments: limit))
        _ = try d.ok(["cancel", running])
    }

    @Test func withoutADaemonItSaysNothingAndStartsNone() throws {
        let d = try DaemonFixture()
        let session = try Session(d)
        try session.appendToolResult(Self.launchText("bg_00001111"))
        // No daemon ever ran here.
        for event in ["Stop", "PostToolUse", "UserPromptSubmit"] { Self.expectSilent(try session.hook(event)) }
        #expect(!FileSystem.exists(d.state + "/drover.sock") && d.daemonPid == nil)

        // A daemon that died (its socket left behind) is not started again by a hook.
        let running = try d.launch("@hang")
        try session.appendToolResult(Self.launchText(running))
        _ = try Self.blockReason(try session.hook("Stop"))
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually { !Processes.isAlive(daemon) })
        for event in ["Stop", "PostToolUse"] { Self.expectSilent(try session.hook(event)) }
        usleep(200_000)
        #expect(d.daemonPid == daemon, "a hook started a daemon")
    }

    @Test func badInputNeverFailsTheSession() throws {
        let d = try DaemonFixture()
        _ = try d.launch("@result start the daemon")
        let inputs = [
            "", "not json", "[1, 2]", #"{"hook_event_name": "Stop"}"#, #"{"session_id": 7, "hook_event_name": "Stop"}"#,
            #"{"session_id": "", "hook_event_name": "Stop"}"#, #"{"session_id": "../../..", "hook_event_name": "Stop"}"#,
            #"{"session_id": "s1", "hook_event_name": "Stop", "transcript_path": "/nonexistent/t.jsonl"}"#,
            #"{"session_id": "s2", "hook_event_name": "PostToolUse", "tool_name": 3}"#,
        ]
        for input in inputs {
            let result = try runHook(input, in: d)
            #expect(result.status == 0 && result.stdout.isEmpty, "\(input): exit \(result.status), \(result.stdout)")
        }
        #expect(try runHook("not json", in: d).stderr.contains("drover hook claude: the hook input is not JSON"))
        #expect(try runHook(#"{"hook_event_name": "Stop"}"#, in: d).stderr.contains("needs \"session_id\""))
        // Unknown arguments and bad bounds are reported and passed over, not refused (exit 2
        // would block Claude Code's stop).
        let odd = try runHook(#"{"session_id": "s3", "hook_event_name": "Stop"}"#, in: d, arguments: ["--stop-blocks", "many", "--whatever"])
        #expect(odd.status == 0 && odd.stdout.isEmpty)
        #expect(odd.stderr.contains("--stop-blocks \"many\" is not a count") && odd.stderr.contains("ignoring the argument \"--whatever\""), "\(odd.stderr)")

        // Session ids name files only through their safe characters, inside the state folder.
        let weird = #"{"session_id": "../../escape/\u00e9/x y", "hook_event_name": "Stop"}"#
        #expect(try runHook(weird, in: d).status == 0)
        let names = FileSystem.list(d.state + "/hooks/claude").sorted()
        #expect(names.count == 3, "\(names)")
        for name in names {
            #expect(name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }, "\(name)")
        }
        #expect(names.contains { $0.hasPrefix("escapexy-") }, "\(names)")
        #expect(!FileSystem.exists(d.folder + "/escape") && !FileSystem.exists(d.state + "/escape"))
    }

    @Test func printSettingsNamesTheThreeEventsWithThisStateFolder() throws {
        let d = try DaemonFixture()
        let result = try d.run(["hook", "claude", "--print-settings", "--stop-blocks", "3"])
        #expect(result.status == 0, "\(result.stderr)")
        let hooks = try #require(try parseObject(result.stdout)["hooks"]?.objectValue)
        #expect(hooks.keys.sorted() == ["PostToolUse", "Stop", "UserPromptSubmit"])
        for (event, entries) in hooks.members {
            let entry = try #require(entries.arrayValue?.first?.objectValue)
            let command = try #require(entry["hooks"]?.arrayValue?.first?.objectValue?["command"]?.stringValue)
            #expect(command == "\(droverExecutable) hook claude --state-dir \(d.state) --config \(d.config) --stop-blocks 3", "\(event): \(command)")
            if event == "PostToolUse" { #expect(entry["matcher"] == "*") }
        }
    }
}

/// A finished run of the hook.
struct HookResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// `drover hook claude ARGS --state-dir STATE` with `input` on stdin.
func runHook(_ input: String, in d: DaemonFixture, arguments: [String] = []) throws -> HookResult {
    let inputPath = d.folder + "/.hook-in"
    try FileSystem.writeFile(inputPath, Array(input.utf8))
    let fd = open(inputPath, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("cannot open \(inputPath)") }
    defer { close(fd) }
    let out = d.folder + "/.hook-out"
    let err = d.folder + "/.hook-err"
    let pid = try spawnChild([droverExecutable, "hook", "claude"] + arguments + ["--state-dir", d.state], input: fd, output: .file(out), stderr: err)
    let status = waitForExit(pid)
    return HookResult(status: status, stdout: readText(out), stderr: readText(err))
}

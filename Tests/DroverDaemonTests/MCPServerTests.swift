import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover mcp` driven by a client over real pipes, against a real daemon with real
/// mock-agent children.
@Suite struct MCPServerTests {
    @Test func initializeListAndDelegateWithACompletionNotification() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        let hello = try client.initialize()
        #expect(hello["serverInfo"]?.objectValue?["name"] == "drover")
        #expect(hello["capabilities"]?.objectValue?["tools"] != nil)

        let tools = try client.request("tools/list", [:])["tools"]?.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(tools.compactMap { $0["name"]?.stringValue }.sorted() == ["background_cancel", "background_output", "delegate_task"])
        let delegate = try #require(tools.first { $0["name"] == "delegate_task" })
        let properties = delegate["inputSchema"]?.objectValue?["properties"]?.objectValue
        for name in ["description", "prompt", "agent", "run_in_background", "session_id", "provider", "model"] {
            #expect(properties?[name] != nil, "delegate_task lacks \(name)")
        }
        // The model learns which agents exist from the description.
        #expect(delegate["description"]?.stringValue?.contains("- librarian:") == true)

        let launched = try client.call("delegate_task", ["description": "map the code", "prompt": "@sleep 200ms\n@result the map", "agent": "explore"])
        #expect(!launched.isError)
        #expect(launched.text.hasPrefix("Background task launched successfully."))
        let taskID = try #require(field("Task ID", in: launched.text))
        let sessionID = try #require(field("Session ID", in: launched.text))
        #expect(TaskIdentifiers.isTaskID(taskID) && TaskIdentifiers.isSessionID(sessionID))
        #expect(field("Agent", in: launched.text) == "explore")
        #expect(field("Description", in: launched.text) == "map the code")

        let note = try #require(try client.notification(about: taskID))
        let data = note["data"]?.objectValue
        #expect(data?["status"] == "completed")
        #expect(data?["session_id"]?.stringValue == sessionID)
        #expect(data?["message"]?.stringValue?.contains("background_output") == true)
        #expect(try d.status(taskID) == "completed")

        let output = try client.call("background_output", ["task_id": .string(taskID)])
        #expect(!output.isError)
        #expect(output.text.hasPrefix("Task Result") && output.text.hasSuffix("the map"))
        #expect(client.finish() == 0)
    }

    @Test func blockingOutputWaitsForTheEndAndTimesOutWithTheStatus() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let slow = try client.call("delegate_task", ["description": "slow one", "prompt": "@sleep 30s\nslow work", "agent": "oracle"])
        let slowID = try #require(field("Task ID", in: slow.text))
        let quick = try client.call("delegate_task", ["description": "quick one", "prompt": "@sleep 400ms\n@result quick answer", "agent": "explore"])
        let quickID = try #require(field("Task ID", in: quick.text))

        // Blocking returns when the task ends, not at the timeout.
        let started = Clock.wallMs()
        let done = try client.call("background_output", ["task_id": .string(quickID), "block": true, "timeout": 20_000])
        #expect(Clock.wallMs() - started < 15_000)
        #expect(done.text.hasPrefix("Task Result") && done.text.hasSuffix("quick answer"))

        // A short timeout answers with the status table and the prompt.
        let waiting = try client.call("background_output", ["task_id": .string(slowID), "block": true, "timeout": 150])
        #expect(!waiting.isError)
        #expect(waiting.text.hasPrefix("Task Status"))
        #expect(waiting.text.contains("| \(slowID)") && waiting.text.contains("running"))
        #expect(waiting.text.contains("Still running") && waiting.text.contains("slow work"))
        // Not blocking: the same table at once.
        let now = try client.call("background_output", ["task_id": .string(slowID)])
        #expect(now.text.hasPrefix("Task Status") && !now.text.contains("Still running"))

        // Waiting in the foreground answers with the result.
        let foreground = try client.call("delegate_task", ["prompt": "@result in the foreground", "agent": "librarian", "run_in_background": false])
        #expect(foreground.text.hasPrefix("Task Result") && foreground.text.hasSuffix("in the foreground"))

        _ = try client.call("background_cancel", ["all": true])
        #expect(client.finish() == 0)
    }

    @Test func cancellingOneThenAllAndContinuingASession() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        var ids: [String] = []
        for i in 0..<3 {
            let answer = try client.call("delegate_task", ["description": .string("long \(i)"), "prompt": "@message working\n@hang", "agent": "explore"])
            ids.append(try #require(field("Task ID", in: answer.text)))
        }
        #expect(eventually { ids.allSatisfy { (try? d.status($0)) == "running" } })
        let pids = try ids.map { try #require(try d.task($0)["pid"]?.intValue.map { Int32($0) }) }

        let one = try client.call("background_cancel", ["taskId": .string(ids[0])])
        #expect(!one.isError)
        #expect(one.text.hasPrefix("Cancelled 1 background task(s):"))
        #expect(one.text.contains(ids[0]) && one.text.contains("delegate_task with session_id"))
        #expect(!Processes.exists(pids[0]))

        let rest = try client.call("background_cancel", ["all": true])
        #expect(rest.text.hasPrefix("Cancelled 2 background task(s):"))
        #expect(rest.text.contains(ids[1]) && rest.text.contains(ids[2]))
        // The answer comes once the children are reaped.
        for pid in pids {
            #expect(!Processes.exists(pid))
            #expect(Processes.liveMembers(ofGroup: pid).isEmpty)
        }
        for id in ids { #expect(try d.task(id)["reason"] == "user") }
        // One notification per task, however it ended.
        for id in ids {
            let note = try client.notification(about: id)
            #expect(note?["data"]?.objectValue?["status"] == "cancelled", "no cancelled notification for \(id)")
        }

        // The cancelled session goes on where it stopped.
        let session = try #require(try d.task(ids[2])["session_id"]?.stringValue)
        let resumed = try client.call("delegate_task", ["session_id": .string(session), "prompt": "@result picked up again"])
        #expect(!resumed.isError)
        #expect(field("Session ID", in: resumed.text) == session)
        #expect(field("Agent", in: resumed.text) == "explore")
        let resumedID = try #require(field("Task ID", in: resumed.text))
        let result = try client.call("background_output", ["task_id": .string(resumedID), "block": true, "timeout": 10_000])
        #expect(result.text.hasSuffix("picked up again"))
        #expect(client.finish() == 0)
    }

    /// Per-task settings an agent may give: a time limit; and the daemon's config, which
    /// must be the one this server names.
    @Test func aTtlFromTheAgentAndADaemonRunningAnotherConfig() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let launched = try client.call("delegate_task", ["prompt": "@hang", "agent": "explore", "ttl": "1s"])
        let taskID = try #require(field("Task ID", in: launched.text))
        #expect(eventually(withinMs: 15_000) { (try? d.task(taskID)["reason"]) == "ttl" })
        #expect(try d.task(taskID)["request"]?.objectValue?["taskTtl"] == 1000)

        // The daemon is made to run another config: this server's tasks are refused with the way out.
        let other = d.folder + "/other.jsonc"
        try FileSystem.writeFile(other, Array("{}".utf8))
        #expect(try runDrover(["reload", "--state-dir", d.state, "--config", other], in: d.folder).status == 0)
        let refused = try client.call("delegate_task", ["prompt": "@result no", "agent": "explore"])
        #expect(refused.isError && refused.text.contains("drover reload --config \(d.config)"), "\(refused.text)")
        #expect(client.finish() == 0)
    }

    @Test func badArgumentsGiveToolErrorsThatSayWhatToDo() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let cases: [(String, JSONObject, String)] = [
            ("background_output", ["task_id": "bg_00000000"], "Give a task id (bg_...) that delegate_task returned"),
            ("background_output", ["task_id": "ses_00000000"], "is a session id; give a task id"),
            ("background_output", ["task_id": "bg_00000000", "block": true, "timeout": 600_001], "between 0 and 600000 ms"),
            ("background_output", ["task_id": "bg_00000000", "timeout": -5], "between 0 and 600000 ms"),
            ("background_output", ["task_id": "bg_00000000", "timeout": "soon"], "timeout must be a number of milliseconds"),
            ("background_output", [:], "task_id is required"),
            ("delegate_task", ["prompt": "x"], "agent is required for a new task: one of claude, codex, explore, librarian, opencode, oracle"),
            ("delegate_task", ["agent": "explore"], "prompt is required"),
            ("delegate_task", ["prompt": "x", "agent": "nobody"], "unknown agent \"nobody\""),
            ("delegate_task", ["prompt": "x", "session_id": "bg_00000000"], "is a task id; give its session id"),
            ("delegate_task", ["prompt": "x", "session_id": "ses_00000000"], "no such session"),
            ("delegate_task", ["prompt": "x", "agent": "explore", "run_in_background": "maybe"], "run_in_background must be true or false"),
            ("delegate_task", ["prompt": "x", "agent": "explore", "ttl": "soon"], "ttl: \"soon\" is not a duration"),
            ("delegate_task", ["prompt": "x", "agent": "explore", "sandbox": "tight"], "sandbox: expected workdir, readonly or none"),
            ("background_cancel", [:], "give taskId"),
            ("background_cancel", ["taskId": "bg_00000000", "all": true], "not both"),
            ("background_cancel", ["taskId": "bg_00000000"], "no such task"),
            ("no_such_tool", [:], "unknown tool"),
        ]
        for (tool, arguments, advice) in cases {
            let answer = try client.call(tool, arguments)
            #expect(answer.isError, "\(tool) \(JSONWriter.string(.object(arguments))) was not an error")
            #expect(answer.text.contains(advice), "\(tool): \(answer.text)")
        }
        // Still serving, and nothing was launched by the bad calls.
        let fine = try client.call("delegate_task", ["prompt": "@result fine", "agent": "explore", "run_in_background": false])
        #expect(fine.text.hasSuffix("fine"))
        #expect(try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue?.count == 1)
        #expect(client.finish() == 0)
    }

    @Test func everyAnswerBeginsWithTheEndsSinceThePreviousAnswerEachOnce() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let quick = try client.call("delegate_task", ["description": "quick one", "prompt": "@sleep 300ms\n@result quick answer", "agent": "explore"])
        let quickID = try #require(field("Task ID", in: quick.text))
        let slow = try client.call("delegate_task", ["description": "slow one", "prompt": "@message working\n@hang", "agent": "oracle"])
        let slowID = try #require(field("Task ID", in: slow.text))
        // The server has seen the end once its notification is out.
        _ = try #require(try client.notification(about: quickID))

        let status = try client.call("background_output", ["task_id": .string(slowID)])
        // Reported by the first answer after the end: the status (or, on a slow machine,
        // already the second launch), and by that one only.
        let ends = Array(reportedEnds(in: slow.text)) + Array(reportedEnds(in: status.text))
        #expect(ends.map(\.key) == [quickID], "\(slow.text)\n\n\(status.text)")
        let line = try #require(ends.first?.value)
        #expect(line.contains("\"quick one\" (agent explore) ended: completed."), "\(line)")
        #expect(line.contains("background_output, task_id \"\(quickID)\""), "\(line)")
        #expect(answerBody(status.text).hasPrefix("Task Status"))
        // Once per server: the next answer starts with itself.
        let again = try client.call("background_output", ["task_id": .string(slowID)])
        #expect(reportedEnds(in: again.text).isEmpty && again.text.hasPrefix("Task Status"), "\(again.text)")

        // An end that is not a completion says why, even at the head of an error answer.
        _ = try d.ok(["cancel", slowID])
        _ = try #require(try client.notification(about: slowID))
        let bad = try client.call("background_output", [:])
        #expect(bad.isError)
        #expect(reportedEnds(in: bad.text)[slowID]?.contains("\"slow one\" (agent oracle) ended: cancelled (user).") == true, "\(bad.text)")
        #expect(answerBody(bad.text).hasPrefix("Error: task_id is required"))
        let quiet = try client.call("background_output", [:])
        #expect(quiet.text.hasPrefix("Error: task_id is required"))
        #expect(client.finish() == 0)
    }

    @Test func anEndTheAnswerTellsItselfIsNotReportedAgain() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        // The server saw the end before the answer that gives the result...
        let first = try client.call("delegate_task", ["prompt": "@result first answer", "agent": "explore"])
        let firstID = try #require(field("Task ID", in: first.text))
        _ = try #require(try client.notification(about: firstID))
        let firstResult = try client.call("background_output", ["task_id": .string(firstID)])
        #expect(firstResult.text.hasPrefix("Task Result") && firstResult.text.hasSuffix("first answer"), "\(firstResult.text)")
        // ...or sees it while the answer waits for it.
        let second = try client.call("delegate_task", ["prompt": "@sleep 300ms\n@result second answer", "agent": "explore"])
        let secondID = try #require(field("Task ID", in: second.text))
        let secondResult = try client.call("background_output", ["task_id": .string(secondID), "block": true, "timeout": 20_000])
        #expect(secondResult.text.hasPrefix("Task Result") && secondResult.text.hasSuffix("second answer"), "\(secondResult.text)")
        _ = try #require(try client.notification(about: secondID))

        // Cancelled by the model: the cancel answer tells it.
        var hanging: [String] = []
        for i in 0..<2 {
            let answer = try client.call("delegate_task", ["description": .string("hang \(i)"), "prompt": "@hang", "agent": "oracle"])
            hanging.append(try #require(field("Task ID", in: answer.text)))
        }
        let cancelled = try client.call("background_cancel", ["all": true])
        #expect(reportedEnds(in: cancelled.text).isEmpty && cancelled.text.hasPrefix("Cancelled 2 background task(s):"), "\(cancelled.text)")
        for id in hanging { _ = try #require(try client.notification(about: id)) }

        let nothing = try client.call("background_cancel", ["all": true])
        #expect(nothing.text.hasPrefix("Cancelled 0 background task(s):"), "\(nothing.text)")
        #expect(client.finish() == 0)
    }

    @Test func descriptionsBeginWithSearchWordsAndPromiseOnlyWhatAnswersDeliver() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        let hello = try client.initialize()
        let instructions = try #require(hello["instructions"]?.stringValue)
        #expect(instructions.contains("the next answer of any drover tool begins with the tasks that ended"), "\(instructions)")
        #expect(!instructions.contains("notified"))
        let tools = try client.request("tools/list", [:])["tools"]?.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(tools.count == 3)
        for tool in tools {
            let description = tool["description"]?.stringValue ?? ""
            let searchLine = String(description.split(separator: "\n").first ?? "")
            #expect(searchLine.hasPrefix("background agent task ") && searchLine.hasSuffix(":") && searchLine.contains("subagent"), "\(searchLine)")
            #expect(!description.contains("notified") && !description.contains("notification"), "\(description)")
        }
        let delegate = try #require(tools.first { $0["name"] == "delegate_task" }?["description"]?.stringValue)
        #expect(delegate.hasPrefix("background agent task delegate parallel subagent"), "\(delegate)")

        let launched = try client.call("delegate_task", ["prompt": "@hang", "agent": "explore"])
        #expect(launched.text.contains("When it ends, the next answer of any drover tool begins with its status"), "\(launched.text)")
        #expect(!launched.text.contains("notified"))
        let taskID = try #require(field("Task ID", in: launched.text))
        let waited = try client.call("background_output", ["task_id": .string(taskID), "block": true, "timeout": 100])
        #expect(waited.text.contains("Still running") && waited.text.contains("the next answer of any drover tool begins with its status"), "\(waited.text)")
        _ = try client.call("background_cancel", ["all": true])
        #expect(client.finish() == 0)
    }

    @Test func aTaskOfADaemonThatDiedIsStillReported() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let launched = try client.call("delegate_task", ["prompt": "@message working\n@hang", "agent": "explore"])
        let taskID = try #require(field("Task ID", in: launched.text))
        #expect(eventually { (try? d.status(taskID)) == "running" })
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        // No further tool call: the server connects again by itself, a new daemon recovers
        // the folder, and the lost task is reported.
        let note = try #require(try client.notification(about: taskID, timeoutMs: 15_000))
        #expect(note["data"]?.objectValue?["status"] == "error")
        #expect(note["data"]?.objectValue?["reason"] == "lost")
        #expect(d.daemonPid != daemon)
        #expect(client.finish() == 0)
    }
}

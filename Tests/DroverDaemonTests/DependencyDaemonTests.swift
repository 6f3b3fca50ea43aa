import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover launch --after` and `--priority` through the daemon (SPEC 13).
@Suite struct DependencyDaemonTests {
    @Test func aLaunchWaitsForItsDependencyAndTakesItsResult() throws {
        let d = try DaemonFixture()
        // The plan ends only when the test says so: until then the build must wait.
        let plan = try d.launch("@await-prompt\n@result the plan")
        let build = try d.launch("@result built from: {result:\(plan)}", ["--after", plan])
        let pending = try JSONParser.parse(try d.ok(["status", build, "--json"])).value.arrayValue?.first?.objectValue
        #expect(pending?["status"] == "pending" && pending?["waiting_for"] == "dependency", "\(String(describing: pending))")
        let session = try #require(try d.task(plan)["session_id"]?.stringValue)
        #expect(eventually { (try? d.status(plan)) == "running" })
        _ = try d.ok(["continue", session, "--prompt", "go on"])
        let output = try d.ok(["output", build, "--wait", "--timeout", "20s"])
        #expect(output.contains("built from: the plan"), "\(output)")
        let planTask = try d.task(plan), buildTask = try d.task(build)
        #expect((buildTask["started_at"]?.stringValue ?? "") >= (planTask["ended_at"]?.stringValue ?? "~"))
        #expect(buildTask["request"]?.objectValue?["after"] == [.string(plan)])
    }

    @Test func anUnknownOrMalformedDependencyIsRefused() throws {
        let d = try DaemonFixture()
        let unknown = try d.run(["launch", "--agent", "explore", "--prompt", "x", "--after", "bg_0000dead"])
        #expect(unknown.status != 0 && unknown.stderr.contains("after: no task bg_0000dead"), "\(unknown.stderr)")
        let malformed = try d.run(["launch", "--agent", "explore", "--prompt", "x", "--after", "ses_0000dead"])
        #expect(malformed.status == 2 && malformed.stderr.contains("--after ses_0000dead: expected a task id"), "\(malformed.stderr)")
        let first = try d.launch("@result one")
        let notWaited = try d.run(["launch", "--agent", "explore", "--prompt", "use {result:\(first)}"])
        #expect(notWaited.status != 0 && notWaited.stderr.contains("names a task that is not in \"after\""), "\(notWaited.stderr)")
        #expect(try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue?.count == 1, "nothing was queued")
    }

    @Test func cancellingADependencyCancelsWhatWaitsForIt() throws {
        let d = try DaemonFixture()
        let slow = try d.launch("@hang")
        let next = try d.launch("@result never", ["--after", slow])
        let last = try d.launch("@result never either", ["--after", next])
        _ = try d.ok(["cancel", slow])
        _ = try d.run(["wait", next, last, "--timeout", "10s"])
        #expect(try d.task(next)["reason"] == "dependency" && d.task(next)["error"] == .string("its dependency \(slow) ended cancelled (user)"))
        #expect(try d.task(last)["reason"] == "dependency" && d.task(last)["status"] == "cancelled")
    }

    /// A daemon killed while tasks wait for each other: its successor queues them again in
    /// an order where each finds what it waits for, and the chain runs.
    @Test func aChainOfWaitingTasksSurvivesADaemonRestart() throws {
        let d = try DaemonFixture(settings: "\"retryOn\": [\"lost\"], \"retries\": 1")
        let first = try d.launch("@sleep 60s")
        let second = try d.launch("@result second after {result:\(first)}", ["--after", first])
        let third = try d.launch("@result third", ["--after", second])
        #expect(eventually(withinMs: 5000) { (try? d.task(first)["pid"]?.intValue) != nil })
        let firstWorker = try #require(try d.task(first)["pid"]?.intValue)
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually(withinMs: 5000) { !Processes.isAlive(daemon) })
        // The restarted daemon: the first is lost and tried again; the others wait for it.
        _ = try d.ok(["status"])
        #expect(try d.task(second)["waiting_for"] == "dependency" && d.task(third)["waiting_for"] == "dependency")
        _ = try d.ok(["cancel", first])
        _ = try d.run(["wait", second, third, "--timeout", "10s"])
        #expect(try d.task(second)["reason"] == "dependency" && d.task(third)["reason"] == "dependency")
        // No worker of the chain is left: the first attempt's nor the retried one's.
        let retriedWorker = try d.task(first)["pid"]?.intValue
        for pid in [firstWorker, retriedWorker].compactMap({ $0 }) {
            #expect(eventually(withinMs: 5000) { !Processes.isAlive(pid_t(pid)) }, "worker \(pid) left behind")
        }
    }

    @Test func priorityOrdersTheQueue() throws {
        let d = try DaemonFixture(settings: "\"defaultConcurrency\": 1")
        // The blocker holds the one slot until all three wait behind it.
        let blocker = try d.launch("@hang")
        let low = try d.launch("@result low", ["--priority", "-3"])
        let normal = try d.launch("@result normal")
        let high = try d.launch("@result high", ["--priority", "7"])
        _ = try d.ok(["cancel", blocker])
        _ = try d.run(["wait", low, normal, high, "--timeout", "20s"])
        let starts = try readLines(d.state + "/events.jsonl").filter { $0["status"] == "running" }.compactMap { $0["task_id"]?.stringValue }
        #expect(starts == [blocker, high, normal, low], "\(starts)")
        #expect(try d.task(high)["request"]?.objectValue?["priority"] == 7)
    }
}

/// `drover restart ID [--new-session]` and `drover run --retry-failed` (SPEC 13).
@Suite struct RestartTests {
    @Test func restartQueuesTheSameRequestAsANewTaskOfTheSameSession() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result done once")
        _ = try d.ok(["output", first, "--wait", "--timeout", "20s"])
        let again = try d.ok(["restart", first, "--wait"])
        #expect(again.contains("done once"), "\(again)")
        let tasks = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(tasks.count == 2)
        let secondID = try #require(tasks.first { $0["id"]?.stringValue != first }?["id"]?.stringValue)
        let original = try d.task(first), second = try d.task(secondID)
        #expect(second["session_id"] == original["session_id"] && second["prompt"] == original["prompt"] && second["agent"] == "explore")
        #expect(second["restart_of"] == .string(first))
        let fresh = try d.ok(["restart", first, "--new-session", "--json"])
        #expect(try parseObject(fresh)["session_id"] != original["session_id"], "\(fresh)")
    }

    @Test func onlyAnEndedKnownTaskCanBeRestarted() throws {
        let d = try DaemonFixture()
        let running = try d.launch("@hang")
        let refused = try d.run(["restart", running])
        #expect(refused.status == 2 && refused.stderr.contains("has not ended: cancel it first"), "\(refused.stderr)")
        let unknown = try d.run(["restart", "bg_0000beef"])
        #expect(unknown.status == 6 && unknown.stderr.contains("no such task: bg_0000beef"), "\(unknown.stderr)")
        _ = try d.ok(["cancel", running])
    }

    /// The failed row (and what waited for it) runs again from the folder's own copy of the
    /// manifest; the completed rows do not.
    @Test func retryFailedRunsAgainWhatDidNotComplete() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let config = folder + "/config.jsonc"
        try FileSystem.writeFile(config, Array(#"{"background_task": {"killGrace": "500ms"}}"#.utf8))
        let manifest = """
            {"command": ["sh", "-c", "echo ok >> runs-ok.log"], "description": "fine"}
            {"command": ["sh", "-c", "echo x >> runs-flaky.log; test -f ready"], "name": "flaky", "description": "flaky"}
            {"command": ["sh", "-c", "echo after >> runs-after.log"], "after": ["flaky"], "description": "after"}
            """
        try FileSystem.writeFile(folder + "/m.jsonl", Array(manifest.utf8))
        let first = try runDrover(["run", "m.jsonl", "--results", "out", "--config", config], in: folder)
        #expect(first.status == 1, "\(first.stdout) \(first.stderr)")
        #expect(try readJSON(folder + "/out/summary.json")["counts"]?.objectValue?["cancelled"] == 1)
        try FileSystem.writeFile(folder + "/ready", [])
        let second = try runDrover(["run", "--retry-failed", "--results", "out", "--config", config], in: folder)
        #expect(second.status == 0, "\(second.stdout) \(second.stderr)")
        let counts = try #require(try readJSON(folder + "/out/summary.json")["counts"]?.objectValue)
        #expect(counts["completed"] == 3, "\(counts)")
        #expect(readText(folder + "/runs-ok.log") == "ok\n", "the completed row did not run again")
        #expect(readText(folder + "/runs-flaky.log") == "x\nx\n" && readText(folder + "/runs-after.log") == "after\n")
    }
}

/// `delegate_task` with `after` and `priority` (SPEC 13).
@Suite struct DelegateDependencyTests {
    @Test func aDelegatedTaskWaitsForTheTasksItNamesAndTakesTheirResults() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        _ = try client.initialize()
        let first = try client.call("delegate_task", ["description": "plan", "prompt": "@await-prompt\n@result the plan", "agent": "explore"])
        let planID = try #require(field("Task ID", in: first.text))
        let second = try client.call("delegate_task", ["description": "build", "prompt": .string("@result built on {result:\(planID)}"),
                                                        "agent": "explore", "after": .array([.string(planID)]), "priority": 2])
        #expect(!second.isError, "\(second.text)")
        let buildID = try #require(field("Task ID", in: answerBody(second.text)))
        #expect(try d.task(buildID)["waiting_for"] == "dependency" && d.task(buildID)["request"]?.objectValue?["priority"] == 2)
        #expect(eventually { (try? d.status(planID)) == "running" })
        _ = try d.ok(["continue", try #require(try d.task(planID)["session_id"]?.stringValue), "--prompt", "go"])
        let result = try client.call("background_output", ["task_id": .string(buildID), "block": true, "timeout": 20_000])
        #expect(answerBody(result.text).contains("built on the plan"), "\(result.text)")
        let bad = try client.call("delegate_task", ["prompt": "x", "agent": "explore", "after": .array(["nope"])])
        #expect(bad.isError && bad.text.contains("after: nope is not a task id"), "\(bad.text)")
        let unknown = try client.call("delegate_task", ["prompt": "x", "agent": "explore", "after": "bg_0000dead"])
        #expect(unknown.isError && unknown.text.contains("no task bg_0000dead"), "\(unknown.text)")
    }
}

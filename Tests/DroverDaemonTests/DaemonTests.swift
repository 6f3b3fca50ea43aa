import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// End to end: the real CLI against a real daemon, with real mock-agent children.
@Suite struct DaemonTests {
    @Test func aShellScriptFlowUnderAProviderLimit() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 2}")
        var ids: [String] = []
        for i in 0..<10 { ids.append(try d.launch("@sleep 150ms\n@result answer \(i)")) }
        #expect(Set(ids).count == 10 && ids.allSatisfy { TaskIdentifiers.isTaskID($0) })
        _ = try d.ok(["wait"] + ids)
        var spans: [(Int64, Int64)] = []
        for (i, id) in ids.enumerated() {
            #expect(readText(d.state + "/tasks/\(id)/result.md") == "answer \(i)")
            let task = try d.task(id)
            #expect(task["status"] == "completed")
            let snapshot = try #require(TaskSnapshot(json: task))
            spans.append((try #require(snapshot.startedMs), try #require(snapshot.endedMs)))
        }
        // Never more than 2 at once, from the recorded times.
        let most = spans.map { span in spans.filter { $0.0 <= span.0 && span.0 < $0.1 }.count }.max() ?? 0
        #expect(most <= 2)
        let table = try d.ok(["status"])
        #expect(table.contains("| Task ID") && table.contains("| Session ID"))
        #expect(table.split(separator: "\n").count == 12)
        let json = try d.ok(["status", "--json"])
        #expect(try JSONParser.parse(json).value.arrayValue?.count == 10)
        let output = try d.ok(["output", ids[3]])
        #expect(output.hasPrefix("Task Result"))
        #expect(output.contains("Task ID: \(ids[3])") && output.hasSuffix("answer 3"))
    }

    @Test func cancellingPendingAndRunningTasks() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 1}")
        let pidFile = d.folder + "/grandchild.pid"
        let running = try d.launch("@spawn-grandchild \(pidFile)\n@message working\n@hang")
        let pending = try d.launch("@result never")
        #expect(eventually { FileSystem.exists(pidFile) })
        #expect(try d.status(pending) == "pending")
        let first = try d.run(["cancel", pending])
        #expect(first.status == 0)
        #expect(first.stdout.contains("Cancelled 1 background task(s):"))
        #expect(first.stdout.contains("drover continue ses_"))
        #expect(try d.status(pending) == "cancelled")
        let worker = try #require(try d.task(running)["pid"]?.intValue.map { Int32($0) })
        _ = try d.ok(["cancel", running])
        // cancel returns once the children are reaped.
        #expect(try d.status(running) == "cancelled")
        #expect(try d.task(running)["reason"] == "user")
        #expect(!Processes.exists(worker))
        #expect(Processes.liveMembers(ofGroup: worker).isEmpty)
        let grandchild = try #require(Int32(readText(pidFile).split(separator: "\n").first ?? ""))
        #expect(eventually { !Processes.isAlive(grandchild) })
        // Cancelling an ended task succeeds and changes nothing.
        #expect(try d.run(["cancel", running]).status == 0)
    }

    @Test func continuingACancelledSessionResumesIt() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@message one\n@message two\n@hang")
        #expect(eventually { (try? d.task(first)["progress"]?.objectValue?["messages"]?.intValue) == 2 })
        _ = try d.ok(["cancel", first])
        let session = try #require(try d.task(first)["session_id"]?.stringValue)
        let result = try d.run(["continue", session, "--prompt", "@message carry on", "--wait"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasSuffix("carry on\n"))
        let second = try #require(try d.ok(["status", "--json"]).split(separator: "\"id\":\"").dropFirst().compactMap { $0.split(separator: "\"").first }.last)
        let transcript = try readLines(d.state + "/tasks/\(second)/transcript.jsonl")
        #expect(transcript.first?["resume"] == true)
        #expect(transcript.contains { $0["text"]?.stringValue == "resumed \(session) with 2 earlier messages" })
    }

    @Test func aFollowUpPromptReachesTheRunningSession() throws {
        let d = try DaemonFixture()
        let id = try d.launch("@await-prompt\n@result got it")
        #expect(eventually { (try? d.status(id)) == "running" })
        let session = try #require(try d.task(id)["session_id"]?.stringValue)
        let delivered = try d.ok(["continue", session, "--prompt", "also check the tests"])
        #expect(delivered == id, "a running session gets the prompt, not a new task")
        _ = try d.ok(["output", id, "--wait"])
        let transcript = try readLines(d.state + "/tasks/\(id)/transcript.jsonl")
        #expect(transcript.contains { $0["dir"] == "out" && $0["type"] == "prompt" && $0["text"] == "also check the tests" })
        #expect(transcript.contains { $0["dir"] == "in" && $0["text"] == "also check the tests" })
    }

    @Test func exitCodes() throws {
        let d = try DaemonFixture()
        let failing = try d.launch("@exit 3")
        let hanging = try d.launch("@message waiting\n@hang")
        #expect(try d.run(["output", failing, "--wait"]).status == 1)
        let notDone = try d.run(["output", hanging])
        #expect(notDone.status == 3)
        #expect(notDone.stdout.contains("running"))
        let timedOut = try d.run(["output", hanging, "--wait", "--timeout", "200ms"])
        #expect(timedOut.status == 3)
        #expect(try d.run(["wait", hanging, "--timeout", "100ms"]).status == 3)
        let unknown = try d.run(["output", "bg_00000000"])
        #expect(unknown.status == 6)
        #expect(unknown.stderr.contains("bg_00000000"))
        #expect(try d.run(["status", "bg_ffffffff"]).status == 6)
        #expect(try d.run(["continue", "ses_00000000", "--prompt", "x"]).status == 6)
        let wrongKind = try d.run(["output", "ses_12345678"])
        #expect(wrongKind.status == 6 && wrongKind.stderr.contains("session id"))
        let badAgent = try d.run(["launch", "--agent", "nobody", "--prompt", "x"])
        #expect(badAgent.status == 2 && badAgent.stderr.contains("unknown agent \"nobody\""))
        #expect(try d.run(["launch", "--agent", "explore", "--prompt", "x", "--ttl", "soon"]).status == 2)
        _ = try d.ok(["cancel", hanging])
        #expect(try d.run(["output", hanging]).status == 4)
    }

    @Test func noAutostartAndStaleSockets() throws {
        let d = try DaemonFixture()
        let refused = try d.run(["status", "--no-autostart"])
        #expect(refused.status == 5)
        #expect(refused.stderr.contains("no drover daemon"))
        // A socket left by a dead daemon: nobody listens on it.
        try FileSystem.makeDirectories(d.state)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let path = Array((d.state + "/drover.sock").utf8)
            for (i, byte) in path.enumerated() { raw[i] = byte }
        }
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(FileSystem.exists(d.state + "/drover.sock"))
        #expect(try d.run(["status", "--no-autostart"]).status == 5)
        // Autostart replaces it.
        #expect(try d.ok(["status"]) == "No background tasks.")
        let second = try d.run(["serve"])
        #expect(second.status == 2)
        #expect(second.stderr.contains("already serves") && second.stderr.contains("pid \(d.daemonPid ?? -1)"))
    }

    @Test func aKilledDaemonLosesNothingAndLeavesNoOrphan() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 1}")
        let pidFile = d.folder + "/grandchild.pid"
        let running = try d.launch("@spawn-grandchild \(pidFile)\n@message busy\n@hang")
        let pending = try (0..<3).map { try d.launch("@result after restart \($0)") }
        #expect(eventually { FileSystem.exists(pidFile) })
        let worker = try #require(try d.task(running)["pid"]?.intValue.map { Int32($0) })
        let grandchild = try #require(Int32(readText(pidFile).split(separator: "\n").first ?? ""))
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually { !Processes.isAlive(daemon) })
        // The daemon's warden kills the worker and its grandchild at once, before any restart.
        #expect(eventually { !Processes.isAlive(worker) && !Processes.isAlive(grandchild) }, "a SIGKILLed daemon left its task's processes alive")
        // The next command starts a new daemon, which recovers the folder.
        _ = try d.ok(["wait"] + pending)
        #expect(try d.status(running) == "error")
        #expect(try d.task(running)["reason"] == "lost")
        for (i, id) in pending.enumerated() {
            #expect(try d.status(id) == "completed")
            #expect(readText(d.state + "/tasks/\(id)/result.md") == "after restart \(i)")
        }
        // Pending tasks ran in their original order.
        let starts = try pending.map { try d.task($0)["started_at"]?.stringValue ?? "" }
        #expect(starts == starts.sorted())
    }

    @Test func shutdownCancelsRunningAndKeepsPending() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 1}")
        let running = try d.launch("@message busy\n@hang")
        let pending = try d.launch("@result later")
        #expect(eventually { (try? d.status(running)) == "running" })
        let daemon = try #require(d.daemonPid)
        let stopped = try d.run(["shutdown"])
        #expect(stopped.status == 0)
        // By the reply the folder is free for a new daemon; the process leaves right after.
        #expect(!FileSystem.exists(d.state + "/drover.sock"))
        #expect(!FileSystem.exists(d.state + "/daemon.lock"))
        #expect(eventually(withinMs: 2000) { !Processes.isAlive(daemon) })
        #expect(try d.status(running) == "cancelled")
        #expect(try d.task(running)["reason"] == "shutdown")
        #expect(try d.status(pending) == "pending")
        // The next daemon runs what was kept.
        _ = try d.ok(["wait", pending])
        #expect(readText(d.state + "/tasks/\(pending)/result.md") == "later")
    }

    @Test func sigtermStopsTheDaemonWithinTheGrace() throws {
        let d = try DaemonFixture()
        let stubborn = try d.launch("@ignore-term\n@message busy\n@hang")
        #expect(eventually { (try? d.status(stubborn)) == "running" })
        let daemon = try #require(d.daemonPid)
        let worker = try #require(try d.task(stubborn)["pid"]?.intValue.map { Int32($0) })
        let started = Clock.monotonicNs()
        kill(daemon, SIGTERM)
        #expect(eventually(withinMs: 3000) { !Processes.isAlive(daemon) })
        // killGrace is 500 ms here: the spec allows that plus a second.
        #expect(Clock.monotonicNs() - started < 1_500_000_000)
        #expect(!Processes.isAlive(worker))
        #expect(try d.task(stubborn)["reason"] == "shutdown")
    }

    @Test func eventsFollowAndOnComplete() throws {
        let marker = try temporaryFolder()
        defer { removeTree(marker) }
        let d = try DaemonFixture(settings: "\"onComplete\": [\"/usr/bin/touch\", \"\(marker)/{task_id}.{status}\"]")
        _ = try d.ok(["status"])  // the daemon is up before the follower connects
        let followerOutput = d.folder + "/events.out"
        let follower = try startDrover(["events", "--follow", "--state-dir", d.state, "--config", d.config], output: followerOutput)
        defer {
            kill(follower, SIGTERM)
            _ = waitForExit(follower)
        }
        usleep(200_000)
        let id = try d.launch("@result noted")
        _ = try d.ok(["wait", id])
        #expect(eventually { readText(followerOutput).contains("\"completed\"") })
        let lines = readText(followerOutput).split(separator: "\n").compactMap { try? parseObject(String($0)) }
        #expect(lines.filter { $0["task_id"]?.stringValue == id }.map { $0["status"]?.stringValue ?? "" } == ["pending", "running", "completed"])
        #expect(eventually { FileSystem.exists("\(marker)/\(id).completed") })
        let history = try d.ok(["events"])
        #expect(history.contains("\"task_id\":\"\(id)\""))
        let logs = try d.ok(["logs", id])
        #expect(logs.contains("→ start: @result noted") && logs.contains("← result: noted"))
    }

    @Test(.enabled(if: geteuid() == 0, "mounting a small tmpfs needs root"))
    func aLaunchThatCannotBeWrittenIsNotAcknowledged() throws {
        let d = try DaemonFixture()
        try FileSystem.makeDirectories(d.state)
        let mounted = mount("tmpfs", d.state, "tmpfs", 0, "size=256k,mode=0700") == 0
        #expect(mounted, "cannot mount a tmpfs: errno \(errno)")
        guard mounted else { return }
        defer {
            _ = try? d.run(["shutdown", "--no-autostart"])
            umount2(d.state, Int32(MNT_DETACH))
        }
        _ = try d.ok(["status"])
        // Fill the folder's filesystem.
        let filler = d.state + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        let block = [UInt8](repeating: 0, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
        let refused = try d.run(["launch", "--agent", "explore", "--prompt", "@result x"])
        #expect(refused.status == 5)
        #expect(refused.stderr.contains("No space left"), "\(refused.stderr)")
        // Room again: the daemon goes on serving.
        unlink(filler)
        let id = try d.launch("@result written")
        _ = try d.ok(["wait", id])
        #expect(readText(d.state + "/tasks/\(id)/result.md") == "written")
        // The refused launch never started a worker: if its record reached the disk at all,
        // it says cancelled, and there is no transcript (no start frame went out).
        for task in FileSystem.list(d.state + "/tasks") where task != id {
            let record = try readJSON(d.state + "/tasks/\(task)/task.json")
            #expect(record["status"] == "cancelled" && (record["started_at"] ?? .null) == .null, "\(record)")
            #expect(!FileSystem.exists(d.state + "/tasks/\(task)/transcript.jsonl"))
        }
    }

    @Test func aRateLimitShowsInStatsEventsAndStatus() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 4}")
        let limited = try d.launch("@rate-limit 1500ms\n@sleep 100ms\n@result fine")
        _ = try d.ok(["wait", limited])
        // The pool cools down for 1.5 s: a task launched now waits for it, and says so.
        let waiting = try d.launch("@result after")
        let stats = try parseObject(try d.ok(["stats", "--json"]))
        let pool = try #require(stats["pools"]?.arrayValue?.compactMap(\.objectValue).first { $0["id"] == "provider:mock" })
        #expect(pool["limit"] == 4 && pool["cooldown_until"]?.stringValue != nil && pool["effective_limit"]?.intValue != nil, "\(pool)")
        #expect(try d.ok(["stats"]).contains("cooling down for"))
        #expect(try d.ok(["status"]).contains("pending (waiting for cooldown)"))
        #expect(try d.task(waiting)["waiting_for"] == "cooldown")
        _ = try d.ok(["wait", waiting])
        let events = try d.ok(["events"]).split(separator: "\n").compactMap { try? parseObject(String($0)) }.filter { $0["pool"] != nil }
        #expect(events.map { $0["status"]?.stringValue ?? "" } == ["cooldown", "cooldown_end"])
        #expect(events.first?["caused_by"]?.stringValue == limited)
    }

    @Test func aBudgetsWindowSurvivesARestartAndUsageReportsIt() throws {
        let d = try DaemonFixture(settings: """
            "budgets": [{"name": "daily", "scope": "agent:explore", "costUsd": 0.5, "window": "1h"}]
            """)
        let spender = try d.launch("@usage 1000 200 0.6\n@result spent")
        _ = try d.ok(["wait", spender])
        #expect(try d.task(spender)["usage"]?.objectValue?["cost_usd"] == .number(0.6))
        // A new daemon rebuilds the window from usage.jsonl: the budget is still spent.
        _ = try d.ok(["shutdown"])
        let held = try d.launch("@result held back")
        #expect(eventually { (try? d.task(held)["waiting_for"]) == "budget" }, "after a restart the spent window was forgotten")
        #expect(try d.ok(["status"]).contains("pending (waiting for budget)"))
        let other = try d.launch("@result another scope", agent: "librarian")
        _ = try d.ok(["wait", other])
        let stats = try parseObject(try d.ok(["stats", "--json"]))
        let budget = try #require(stats["budgets"]?.arrayValue?.first?.objectValue)
        #expect(budget["name"] == "daily" && budget["spent_usd"] == .number(0.6) && budget["remaining_usd"] == .number(0))
        let report = try d.ok(["usage", "--by", "agent"])
        #expect(report.contains("| explore") && report.contains("0.6"), "\(report)")
        #expect(report.contains("Budget daily (agent:explore, per 1h 00m): $0.6 spent"), "\(report)")
        let json = try parseObject(try d.ok(["usage", "--by", "day", "--json"]))
        #expect(json["total"]?.objectValue?["cost_usd"] == .number(0.6) && json["rows"]?.arrayValue?.count == 1)
        #expect(try d.run(["usage", "--by", "color"]).status == 2)
        _ = try d.ok(["cancel", held])
    }

    @Test func aFolderOthersCanWriteIsRefused() throws {
        let d = try DaemonFixture()
        try FileSystem.makeDirectories(d.state)
        chmod(d.state, 0o777)
        let serve = try d.run(["serve"])
        #expect(serve.status == 2 && serve.stderr.contains(d.state) && serve.stderr.contains("0777"), "\(serve.stderr)")
        let autostarted = try d.run(["status"])
        #expect(autostarted.status == 2 && autostarted.stderr.contains(d.state), "\(autostarted.stderr)")
        #expect(!FileSystem.exists(d.state + "/tasks"), "nothing is written in a refused folder")
        chmod(d.state, 0o700)
        try FileSystem.makeDirectories(d.state + "/tasks")
        chmod(d.state + "/tasks", 0o770)
        let loose = try d.run(["serve"])
        #expect(loose.status == 2 && loose.stderr.contains(d.state + "/tasks"), "\(loose.stderr)")
        chmod(d.state + "/tasks", 0o700)
        #expect(try d.ok(["status"]) == "No background tasks.")
        // A batch's results folder is held to the same rule.
        let results = d.folder + "/results"
        try FileSystem.makeDirectories(results)
        chmod(results, 0o775)
        try FileSystem.writeFile(d.folder + "/m.jsonl", Array(#"{"command": ["/bin/true"]}"#.utf8))
        // `drover run` takes no --state-dir (d.run would add it): the results folder is its folder.
        let run = try runDrover(["run", d.folder + "/m.jsonl", "--results", results, "--config", d.config], in: d.folder)
        #expect(run.status == 2 && run.stderr.contains(results), "\(run.stderr)")
        #expect(FileSystem.list(results).isEmpty)
    }

    @Test(.enabled(if: geteuid() == 0, "giving a folder to another user needs root"))
    func aFolderOwnedByAnotherUserIsRefused() throws {
        let d = try DaemonFixture()
        try FileSystem.makeDirectories(d.state + "/tasks")
        guard let nobody = getpwnam("nobody") else { throw TestFailure("no user nobody") }
        chown(d.state + "/tasks", nobody.pointee.pw_uid, nobody.pointee.pw_gid)
        let serve = try d.run(["serve"])
        #expect(serve.status == 2 && serve.stderr.contains(d.state + "/tasks") && serve.stderr.contains("nobody"), "\(serve.stderr)")
    }

    @Test func logsFollowAWorkerUntilItEnds() throws {
        let d = try DaemonFixture()
        let id = try d.launch("@message first\n@sleep 300ms\n@message second\n@sleep 300ms\n@result done")
        // Returns when the task ends, with every line once, in order.
        let followed = try d.ok(["logs", id, "--follow"])
        let lines = followed.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("→ start:") == true)
        #expect(lines.filter { $0.hasSuffix("assistant: first") }.count == 1)
        #expect(lines.filter { $0.hasSuffix("assistant: second") }.count == 1)
        #expect(lines.last?.hasSuffix("← result: done") == true)
        let raw = try d.ok(["logs", id, "--json"]).split(separator: "\n")
        #expect(raw.count == lines.count)
        #expect(try raw.allSatisfy { try parseObject(String($0))["t"] != nil })
    }

    @Test(.enabled(if: geteuid() == 0, "acting as another user needs root"))
    func anotherUserIsRefused() throws {
        let d = try DaemonFixture()
        _ = try d.ok(["status"])
        // The folder is private: another user cannot even reach the socket...
        let blocked = try d.run(["status", "--no-autostart"], user: "nobody")
        #expect(blocked.status == 5)
        // ...and if it could, the daemon checks the peer's credentials and hangs up.
        chmod(d.folder, 0o755)
        chmod(d.state, 0o755)
        chmod(d.state + "/drover.sock", 0o666)
        chmod(d.config, 0o644)
        let refused = try d.run(["status", "--no-autostart"], user: "nobody")
        #expect(refused.status == 5, "\(refused.stdout) \(refused.stderr)")
        #expect(!refused.stdout.contains("No background tasks"))
        #expect(try d.ok(["status"]) == "No background tasks.", "the daemon keeps serving its own user")
    }

    @Test func malformedRequestsAndDisconnectsDoNotHurtTheDaemon() throws {
        let d = try DaemonFixture()
        _ = try d.ok(["status"])
        let socketPath = d.state + "/drover.sock"
        func connect() -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in Array(socketPath.utf8).enumerated() { raw[i] = byte }
            }
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            return fd
        }
        // Garbage, an oversized header, a disconnect mid-frame, a stream left mid-way.
        for bytes in [Array("garbage!".utf8), FrameEncoder.header(length: 0x7FFF_FFFF), Array(FrameEncoder.encode(["type": "status"]).prefix(6)),
                      FrameEncoder.encode(["type": "events", "follow": true]), FrameEncoder.encode(["type": "nonsense"])] {
            let fd = connect()
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            usleep(20_000)
            close(fd)
        }
        let id = try d.launch("@result still serving")
        _ = try d.ok(["wait", id])
        #expect(readText(d.state + "/tasks/\(id)/result.md") == "still serving")
    }
}

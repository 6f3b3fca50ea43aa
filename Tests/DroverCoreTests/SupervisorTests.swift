@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

/// Real children of the mock agent, real pipes, real signals.
@Suite struct SupervisorTests {
    @Test func aTaskCompletesWithItsResultAndEveryFile() throws {
        let h = try Harness()
        let id = try h.submit("Find the parser\nsecond line") { $0.env["DROVER_MOCK_SECONDS"] = "0.1" }
        let ended = h.run(until: [id])
        #expect(ended[id]?.status == .completed)
        #expect(ended[id]?.reason == .result)
        #expect(try h.result(id) == "explore finished: Find the parser")
        let task = try h.taskJSON(id)
        #expect(task["status"] == "completed")
        #expect(task["result_path"]?.stringValue == h.store.resultFile(id))
        #expect(task["progress"]?.objectValue?["tool_calls"] == 2)
        #expect(task["progress"]?.objectValue?["messages"] == 2)
        #expect(task["exit_code"] == 0)
        for key in ["created_at", "started_at", "ended_at"] {
            #expect(task[key]?.stringValue?.hasSuffix("Z") == true)
        }
        // The transcript holds the start frame out and every frame in, each line valid JSON.
        let transcript = try readLines(h.store.transcriptFile(id))
        #expect(transcript.first?["dir"] == "out" && transcript.first?["type"] == "start")
        #expect(transcript.contains { $0["dir"] == "in" && $0["type"] == "result" })
        #expect(transcript.allSatisfy { $0["t"]?.intValue != nil })
        let session = try readLines(h.store.sessionFile(ended[id]!.sessionID))
        #expect(session.count == transcript.count)
        // One event per state change, in order.
        let events = try readLines(h.store.eventsFile).filter { $0["task_id"]?.stringValue == id }
        #expect(events.map { $0["status"]?.stringValue } == ["pending", "running", "completed"])
        #expect(events.last?["reason"] == "result")
        // Private files.
        var info = stat()
        stat(h.store.taskFile(id), &info)
        #expect(info.st_mode & 0o777 == 0o600)
        stat(h.store.taskDirectory(id), &info)
        #expect(info.st_mode & 0o777 == 0o700)
        h.expectNothingLeft(of: id)
    }

    @Test func limitsAreNeverExceeded() throws {
        var config = Harness.testConfig()
        config.providerConcurrency = ["mock": 3]
        let h = try Harness(config: config)
        var ids: [String] = []
        for i in 0..<12 { ids.append(try h.submit("@sleep \(100 + (i % 4) * 40)ms\n@result \(i)")) }
        let ended = h.run(until: ids)
        #expect(ids.allSatisfy { ended[$0]?.status == .completed })
        // From the recorded start and end times, the most that ever ran at once.
        var points: [(Int64, Int)] = []
        for id in ids {
            let snapshot = try #require(TaskSnapshot(json: try h.taskJSON(id)))
            points.append((try #require(snapshot.startedMs), 1))
            points.append((try #require(snapshot.endedMs), -1))
        }
        var most = 0
        var now = 0
        for point in points.sorted(by: { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }) {
            now += point.1
            most = max(most, now)
        }
        #expect(most <= 3)
        #expect(most == 3, "the pool should have been full at some point")
        ids.forEach { h.expectNothingLeft(of: $0) }
    }

    @Test func aFreedSlotStartsTheNextTaskAtOnce() throws {
        var config = Harness.testConfig()
        config.providerConcurrency = ["mock": 1]
        let h = try Harness(config: config)
        let ids = try (0..<4).map { try h.submit("@sleep 50ms\n@result \($0)") }
        let ended = h.run(until: ids)
        for (previous, next) in zip(ids, ids.dropFirst()) {
            let gap = (ended[next]?.startedMs ?? 0) - (ended[previous]?.endedMs ?? 0)
            // A hand-off, not a poll: the old design waited for a 2 s tick.
            #expect(gap >= 0 && gap < 250, "gap of \(gap) ms between \(previous) and \(next)")
        }
    }

    @Test func ttlKillsTheWholeProcessGroup() throws {
        var config = Harness.testConfig()
        config.timers.taskTtl = 400
        let h = try Harness(config: config)
        let pidFile = h.path("grandchild.pid")
        let id = try h.submit("@spawn-grandchild \(pidFile)\n@message started\n@hang")
        let ended = h.run(until: [id])
        #expect(ended[id]?.status == .cancelled)
        #expect(ended[id]?.reason == .ttl)
        #expect(ended[id]?.error?.contains("ttl") == true)
        let grandchild = try #require(Int32(String(decoding: try FileSystem.read(pidFile), as: UTF8.self).trimmed))
        #expect(!Processes.isAlive(grandchild), "grandchild \(grandchild) survived")
        h.expectNothingLeft(of: id)
    }

    @Test func cancelKillsTheWholeProcessGroup() throws {
        let h = try Harness()
        let pidFile = h.path("grandchild.pid")
        let id = try h.submit("@spawn-grandchild \(pidFile)\n@message started\n@hang")
        // Unowned: the harness must not keep itself alive, or its folder is never removed.
        h.onReport = { [unowned h] snapshot in
            if snapshot.status == .running {
                // Give the worker time to start its grandchild, then cancel.
                let timer = LoopTimer(loop: h.loop)
                timer.start(after: 300) { _ = timer; h.supervisor.cancel(id) }
            }
        }
        let ended = h.run(until: [id])
        #expect(ended[id]?.status == .cancelled)
        #expect(ended[id]?.reason == .user)
        let grandchild = try #require(Int32(String(decoding: try FileSystem.read(pidFile), as: UTF8.self).trimmed))
        #expect(!Processes.isAlive(grandchild))
        h.expectNothingLeft(of: id)
        // The cancel frame went out before the end.
        let transcript = try readLines(h.store.transcriptFile(id))
        #expect(transcript.contains { $0["dir"] == "out" && $0["type"] == "cancel" && $0["reason"] == "user" })
    }

    @Test func aWorkerThatIgnoresSIGTERMIsKilledAfterTheGrace() throws {
        var config = Harness.testConfig()
        config.timers.taskTtl = 200
        config.timers.killGrace = 400
        let h = try Harness(config: config)
        let id = try h.submit("@ignore-term\n@message stubborn\n@hang")
        let ended = h.run(until: [id])
        let task = try #require(ended[id])
        #expect(task.status == .cancelled && task.reason == .ttl)
        #expect(task.signal == SIGKILL)
        #expect((task.durationMs ?? 0) >= 550, "killed after \(task.durationMs ?? 0) ms, before ttl + grace")
        h.expectNothingLeft(of: id)
    }

    @Test func aCrashIsAnErrorWithItsSignal() throws {
        let h = try Harness()
        let id = try h.submit("@message about to crash\n@crash")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .error && task.reason == .signal)
        #expect(task.signal == SIGSEGV)
        #expect(task.error?.contains("SIGSEGV") == true)
        h.expectNothingLeft(of: id)
    }

    @Test func badFramesEndOnlyTheirTask() throws {
        let h = try Harness()
        let garbage = try h.submit("@message hi\n@garbage\n@hang")
        let oversize = try h.submit("@oversize\n@hang")
        let good = try h.submit("@sleep 300ms\n@result fine")
        let ended = h.run(until: [garbage, oversize, good])
        #expect(ended[garbage]?.status == .error && ended[garbage]?.reason == .protocol)
        #expect(ended[garbage]?.error?.contains("not valid JSON") == true)
        #expect(ended[garbage]?.error?.contains("byte") == true)
        #expect(ended[oversize]?.status == .error && ended[oversize]?.reason == .protocol)
        #expect(ended[oversize]?.error?.contains("2147483648") == true)
        #expect(ended[good]?.status == .completed)
        #expect(try h.result(good) == "fine")
        [garbage, oversize, good].forEach { h.expectNothingLeft(of: $0) }
    }

    @Test func anEarlyIdleIsDeferredNotDropped() throws {
        var config = Harness.testConfig()
        config.timers.minIdleTime = 600
        config.timers.taskTtl = 5000
        let h = try Harness(config: config)
        let deferred = try h.submit("@message all done\n@idle\n@hang")
        // A frame after the idle cancels the deferral: that task idles no more and hits its ttl.
        let interrupted = try h.submit("@message first\n@idle\n@sleep 100ms\n@message more work\n@hang") {
            $0.timers.taskTtl = 1500
        }
        let ended = h.run(until: [deferred, interrupted])
        let task = try #require(ended[deferred])
        #expect(task.status == .completed && task.reason == .idle)
        #expect((task.durationMs ?? 0) >= 550, "idle accepted after \(task.durationMs ?? 0) ms")
        #expect(try h.result(deferred) == "all done")
        #expect(ended[interrupted]?.status == .cancelled && ended[interrupted]?.reason == .ttl)
    }

    @Test func openTodosBlockIdle() throws {
        let h = try Harness()
        let id = try h.submit("@todo 2\n@message working\n@idle\n@sleep 200ms\n@todo 0\n@message finished\n@idle\n@hang")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.reason == .idle)
        #expect(try h.result(id) == "finished")
    }

    @Test func theStabilityRuleCompletesASilentWorkerButNeverOneWithHeartbeats() throws {
        var config = Harness.testConfig()
        config.timers.minStabilityTime = 200
        config.timers.pollInterval = 300
        config.timers.stablePolls = 2
        let h = try Harness(config: config)
        let silent = try h.submit("@message my answer\n@hang")
        let busy = try h.submit("@message thinking\n@busy 1500ms\n@result real result")
        let noMessage = try h.submit("@hang") { $0.timers.taskTtl = 1500 }
        let ended = h.run(until: [silent, busy, noMessage])
        #expect(ended[silent]?.status == .completed && ended[silent]?.reason == .stable)
        #expect(try h.result(silent) == "my answer")
        #expect(ended[busy]?.reason == .result)
        #expect(try h.result(busy) == "real result")
        // Stability needs at least one message.
        #expect(ended[noMessage]?.reason == .ttl)
    }

    @Test func aSilentWorkerGoesStale() throws {
        var config = Harness.testConfig()
        config.timers.staleTimeout = 300
        let h = try Harness(config: config)
        let stale = try h.submit("@message hello\n@sleep 10s")
        let lively = try h.submit("@busy 700ms\n@result still here")
        let ended = h.run(until: [stale, lively])
        #expect(ended[stale]?.status == .cancelled && ended[stale]?.reason == .stale)
        #expect(ended[lively]?.status == .completed)
        h.expectNothingLeft(of: stale)
    }

    @Test func aMissingProgramIsASpawnError() throws {
        var config = Harness.testConfig()
        config.agents["ghost"] = AgentConfig(name: "ghost", command: ["drover-no-such-program"])
        config.agents["nowhere"] = AgentConfig(name: "nowhere", command: ["/nonexistent/worker", "--flag"])
        let h = try Harness(config: config)
        let byName = try h.submit("x", agent: "ghost")
        let byPath = try h.submit("x", agent: "nowhere")
        let after = try h.submit("@result still works")
        let noFolder = try h.submit("@result x") { $0.cwd = "/nonexistent/folder" }
        let ended = h.run(until: [byName, byPath, after, noFolder])
        #expect(ended[noFolder]?.reason == .spawn)
        #expect(ended[noFolder]?.error?.contains("/nonexistent/folder does not exist") == true)
        #expect(ended[byName]?.status == .error && ended[byName]?.reason == .spawn)
        #expect(ended[byName]?.error?.contains("drover-no-such-program") == true)
        #expect(ended[byName]?.error?.contains("not found") == true)
        #expect(ended[byPath]?.reason == .spawn)
        #expect(ended[byPath]?.error?.contains("/nonexistent/worker") == true)
        #expect(ended[byPath]?.error?.contains("ENOENT") == true)
        #expect(ended[after]?.status == .completed)
        #expect(h.supervisor.runningCount == 0)
    }

    @Test func exitCodesAndWorkerErrors() throws {
        let h = try Harness()
        let failing = try h.submit("@message x\n@exit 3")
        let reported = try h.submit("@error the model refused")
        let silentExit = try h.submit("@message last words\n@exit 0")
        let ended = h.run(until: [failing, reported, silentExit])
        #expect(ended[failing]?.status == .error && ended[failing]?.reason == .exitCode)
        #expect(ended[failing]?.exitCode == 3)
        #expect(ended[reported]?.reason == .workerError)
        #expect(ended[reported]?.error == "the model refused")
        #expect(ended[silentExit]?.status == .completed && ended[silentExit]?.reason == .exit)
        #expect(try h.result(silentExit) == "last words")
    }

    @Test func theFirstOutcomeWinsAndLaterFramesChangeNothing() throws {
        let h = try Harness()
        let id = try h.submit("@result first\n@error too late\n@result second")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .completed && task.reason == .result)
        #expect(try h.result(id) == "first")
        let events = try readLines(h.store.eventsFile).filter { $0["task_id"]?.stringValue == id }
        #expect(events.filter { $0["status"] != "pending" && $0["status"] != "running" }.count == 1)
    }

    @Test func aWorkerThatLingersAfterItsResultIsEnded() throws {
        let h = try Harness()
        let id = try h.submit("@result done early\n@ignore-term\n@hang")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .completed && task.reason == .result)
        #expect(try h.result(id) == "done early")
        h.expectNothingLeft(of: id)
    }

    @Test func rawCommandsRunWithoutAShell() throws {
        let h = try Harness()
        let echo = try h.submit(command: ["/bin/echo", "prompt={prompt}", "id={task_id}"], prompt: "it's $HOME; rm -rf /")
        let cat = try h.submit(command: ["cat"], prompt: "through stdin\n")
        let fromFile = try h.submit(command: ["cat", "{prompt_file}"], prompt: "from a file")
        let failing = try h.submit(command: ["/bin/sh", "-c", "echo partial; exit 7"])
        let ended = h.run(until: [echo, cat, fromFile, failing])
        #expect(ended[echo]?.reason == .exit)
        #expect(try h.result(echo) == "prompt=it's $HOME; rm -rf / id=\(echo)\n")
        #expect(try h.result(cat) == "through stdin\n")
        #expect(try h.result(fromFile) == "from a file")
        #expect(ended[failing]?.reason == .exitCode && ended[failing]?.exitCode == 7)
        #expect(ended[echo]?.agent == "command" && ended[echo]?.provider == "local")
        let transcript = try readLines(h.store.transcriptFile(cat))
        #expect(transcript.contains { $0["type"] == "message" && $0["text"] == "through stdin" })
    }

    @Test func noDescriptorOfTheSupervisorLeaksIntoAChild() throws {
        let h = try Harness()
        // Some other task's pipes and files are open while this one starts.
        let busy = try h.submit("@message hold the pipes open\n@sleep 300ms\n@result ok")
        let listing = try h.submit(command: ["/bin/ls", "/proc/self/fd"])
        h.run(until: [busy, listing])
        // 0-2, plus the descriptor ls itself opened to read the folder.
        #expect(try h.result(listing) == "0\n1\n2\n3\n")
    }

    @Test func pendingTasksCanBeCancelledAndQueuedTtlApplies() throws {
        var config = Harness.testConfig()
        config.providerConcurrency = ["mock": 1]
        let h = try Harness(config: config)
        let blocker = try h.submit("@message busy\n@hang")
        let waiting = try h.submit("@result never runs")
        let expires = try h.submit("@result never runs either") { $0.timers.queuedTtl = 200 }
        #expect(h.supervisor.snapshot(waiting)?.status == .pending)
        #expect(h.supervisor.cancel(waiting))
        h.run(until: [waiting, expires])
        #expect(h.ended[waiting]?.status == .cancelled && h.ended[waiting]?.reason == .user)
        #expect(h.ended[waiting]?.pid == nil)
        #expect(h.ended[expires]?.reason == .queuedTtl)
        #expect(h.supervisor.snapshot(blocker)?.status == .running)
        h.supervisor.cancel(blocker)
        h.run(until: [blocker])
        #expect(!h.supervisor.cancel(blocker), "cancelling an ended task does nothing")
        h.expectNothingLeft(of: blocker)
    }

    @Test func theChildSeesOnlyTheAllowedEnvironment() throws {
        var config = Harness.testConfig()
        var agent = AgentConfig(name: "envy", command: ["drover-mock-agent"], provider: "mock")
        agent.passEnv = ["PASSED_ON"]
        agent.env = ["FROM_AGENT": "agent value"]
        config.agents["envy"] = agent
        let h = try Harness(config: config, environment: ["SECRET_API_KEY": "sk-123", "PASSED_ON": "yes", "DROVER_DEPTH": "1"])
        let id = try h.submit("@echo-env SECRET_API_KEY\n@echo-env PASSED_ON\n@echo-env FROM_AGENT\n@echo-env DROVER_TASK_ID\n@echo-env DROVER_SLOT\n@echo-env DROVER_DEPTH\n@pwd", agent: "envy") {
            $0.cwd = "/tmp"
        }
        h.run(until: [id])
        let messages = try readLines(h.store.transcriptFile(id)).filter { $0["type"] == "message" }.compactMap { $0["text"]?.stringValue }
        #expect(messages == ["<unset>", "yes", "agent value", id, "0", "2", "/tmp"])
    }

    @Test func aResumedSessionGetsItsTranscript() throws {
        let h = try Harness()
        let first = try h.submit("@message one\n@message two\n@result first done")
        let session = try #require(h.run(until: [first])[first]?.sessionID)
        let second = try h.submit("@message next") {
            $0.sessionID = session
            $0.resume = true
        }
        h.run(until: [second])
        #expect(h.ended[second]?.sessionID == session)
        let transcript = try readLines(h.store.transcriptFile(second))
        let start = try #require(transcript.first)
        #expect(start["resume"] == true)
        #expect(start["transcript_path"]?.stringValue == h.store.sessionFile(session))
        #expect(transcript.contains { $0["text"]?.stringValue == "resumed \(session) with 2 earlier messages" })
        #expect(try h.result(second) == "next")
    }

    @Test func aFloodOfMessagesIsRecordedWhole() throws {
        let h = try Harness()
        let id = try h.submit("@flood 2000 1000\n@result flooded")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.reason == .result)
        #expect(task.progress.messages == 2000)
        let transcript = try readLines(h.store.transcriptFile(id))
        #expect(transcript.filter { $0["type"] == "message" }.count == 2000)
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.last, c == "\n" || c == " " { s = s.dropLast() }
        return String(s)
    }
}

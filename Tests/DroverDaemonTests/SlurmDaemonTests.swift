import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

extension DaemonFixture {
    /// A daemon whose agents run through srun.
    convenience init(launcher: String) throws {
        try self.init(settings: "\"killGrace\": \"1s\", \"launcher\": \(launcher)")
    }

    /// `status ID --json`: what the daemon shows now (task.json follows).
    func shown(_ id: String) throws -> JSONObject {
        try JSONParser.parse(try ok(["status", id, "--json"])).value.arrayValue?.first?.objectValue ?? [:]
    }
}

/// drover's workers on the real one-node cluster (SPEC 14), `Licenses=mock:2`.
@Suite(.serialized) struct SlurmDaemonTests {
    static let slurm = #"{"type": "slurm"}"#

    /// Two daemons, six tasks each: the cluster's license holds both to two at once.
    @Test func twoDaemonsShareTheLicenseLimitOfTwo() throws {
        try SlurmCluster.require()
        let first = try DaemonFixture(launcher: Self.slurm), second = try DaemonFixture(launcher: Self.slurm)
        var ids: [(DaemonFixture, String)] = []
        for n in 0..<6 {
            for d in [first, second] { ids.append((d, try d.launch("@sleep 400ms\n@result task \(n)"))) }
        }
        for d in [first, second] {
            let mine = ids.filter { $0.0 === d }.map(\.1)
            _ = try d.ok(["wait"] + mine + ["--timeout", "120s"])
        }
        var spans: [(start: String, end: String)] = []
        for (d, id) in ids {
            let task = try d.task(id)
            #expect(task["status"] == "completed", "\(task)")
            #expect(readText(d.state + "/tasks/\(id)/result.md").hasPrefix("task "))
            spans.append((task["started_at"]?.stringValue ?? "", task["ended_at"]?.stringValue ?? ""))
        }
        // At each start, how many ran: never more than the two licenses.
        for span in spans {
            let running = spans.filter { $0.start <= span.start && span.start < $0.end }.count
            #expect(running <= 2, "\(running) running at \(span.start): \(spans)")
        }
        #expect(SlurmCluster.jobs(named: ids.map(\.1)).isEmpty)
        let stats = try first.ok(["stats"])
        #expect(stats.contains("cluster license mock: 0 of 2 in use, 2 free"), "\(stats)")
    }

    @Test func framesAndAFollowUpPassThroughSrunUnchanged() throws {
        try SlurmCluster.require()
        let d = try DaemonFixture(launcher: Self.slurm)
        let id = try d.launch("@message looking\n@tool grep {\"pattern\":\"x\"}\n@await-prompt\n@result answered")
        #expect(eventually(withinMs: 20_000) { (try? d.task(id)["progress"]?.objectValue?["tool_calls"]?.intValue) == 1 })
        #expect(eventually(withinMs: 5000) { (try? d.task(id)["slurm"]?.objectValue?["state"]) == "RUNNING" }, "squeue gave its job")
        let session = try #require(try d.task(id)["session_id"]?.stringValue)
        _ = try d.ok(["continue", session, "--prompt", "the follow-up"])
        let output = try d.ok(["output", id, "--wait", "--timeout", "30s"])
        #expect(output.contains("answered"), "\(output)")
        let transcript = readText(d.state + "/tasks/\(id)/transcript.jsonl")
        for piece in [#""text":"looking""#, #""tool":"grep""#, #""text":"the follow-up""#, #""type":"result""#] {
            #expect(transcript.contains(piece), "\(piece) in \(transcript)")
        }
        let job = try #require(try d.task(id)["slurm"]?.objectValue)
        #expect(job["job_id"]?.stringValue.flatMap { Int($0) } != nil, "\(job)")
    }

    @Test func cancellingARunningAndAHeldTaskLeavesNoJobAndNoProcess() throws {
        try SlurmCluster.require()
        let d = try DaemonFixture(launcher: Self.slurm)
        let holders = try (0..<2).map { _ in try d.launch("@hang") }
        let held = try d.launch("@hang")
        #expect(eventually(withinMs: 20_000) { (try? d.shown(held)["slurm"]?.objectValue?["state"]) == "PENDING" }, "the third waits for a license")
        #expect(try d.shown(held)["waiting_for"] == "cluster")
        #expect(try d.ok(["status"]).contains("running (waiting for cluster)"))
        #expect(eventually(withinMs: 20_000) { SlurmCluster.mockAgents(of: holders).count == 2 })
        _ = try d.ok(["cancel", held, holders[0]])
        #expect(eventually(withinMs: 20_000) { (try? d.task(held)["status"]) == "cancelled" && (try? d.task(holders[0])["status"]) == "cancelled" })
        #expect(eventually(withinMs: 10_000) { SlurmCluster.jobs(named: [held, holders[0]]).isEmpty }, "\(SlurmCluster.jobs(named: [held, holders[0]]))")
        #expect(eventually(withinMs: 10_000) { SlurmCluster.mockAgents(of: [held, holders[0]]).isEmpty })
        _ = try d.ok(["cancel", holders[1]])
        #expect(eventually(withinMs: 10_000) { SlurmCluster.jobs(named: holders).isEmpty && SlurmCluster.mockAgents(of: holders).isEmpty })
    }

    @Test func aTtlEndsTheJob() throws {
        try SlurmCluster.require()
        let d = try DaemonFixture(launcher: Self.slurm)
        let id = try d.launch("@hang", ["--ttl", "2s"])
        _ = try d.run(["wait", id, "--timeout", "60s"])
        let task = try d.task(id)
        #expect(task["status"] == "cancelled" && task["reason"] == "ttl", "\(task)")
        #expect(eventually(withinMs: 10_000) { SlurmCluster.jobs(named: [id]).isEmpty && SlurmCluster.mockAgents(of: [id]).isEmpty })
    }

    @Test func aDaemonKilledWhileItsJobsRunHasThemCancelledAfterItsRestart() throws {
        try SlurmCluster.require()
        let d = try DaemonFixture(launcher: Self.slurm)
        let ids = try (0..<2).map { _ in try d.launch("@hang") }
        #expect(eventually(withinMs: 20_000) { ids.allSatisfy { (try? d.task($0)["slurm"]?.objectValue?["state"]) == "RUNNING" } })
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually(withinMs: 5000) { !Processes.isAlive(daemon) })
        _ = try d.ok(["status"])
        for id in ids {
            let shown = try d.shown(id)
            #expect(shown["status"] == "error" && shown["reason"] == "lost", "\(shown)")
        }
        #expect(eventually(withinMs: 10_000) { SlurmCluster.jobs(named: ids).isEmpty }, "\(SlurmCluster.jobs(named: ids))")
        #expect(eventually(withinMs: 10_000) { SlurmCluster.mockAgents(of: ids).isEmpty })
    }

    /// The sandbox is set up on the node, inside the job step: srun -- bwrap -- worker.
    @Test func aSandboxedTaskThroughSrun() throws {
        try SlurmCluster.require()
        let d = try DaemonFixture(launcher: Self.slurm)
        let id = try d.launch("@echo-env DROVER_SANDBOX\n@sleep 1s\n@result boxed", ["--sandbox", "workdir", "--network", "none"])
        #expect(eventually(withinMs: 20_000) { (try? d.task(id)["slurm"]?.objectValue?["state"]) == "RUNNING" })
        let output = try d.ok(["output", id, "--wait", "--timeout", "30s"])
        #expect(output.contains("boxed"), "\(output)")
        #expect(readText(d.state + "/tasks/\(id)/transcript.jsonl").contains(#"\"network\":\"none\""#))
        #expect(eventually(withinMs: 10_000) { SlurmCluster.jobs(named: [id]).isEmpty && SlurmCluster.mockAgents(of: [id]).isEmpty })
    }

    @Test func aMissingSrunIsASpawnErrorNamingIt() throws {
        let d = try DaemonFixture(launcher: #"{"type": "slurm", "srun": "/nonexistent/srun"}"#)
        let id = try d.launch("@result never")
        _ = try d.run(["wait", id, "--timeout", "20s"])
        let task = try d.task(id)
        #expect(task["status"] == "error" && task["reason"] == "spawn", "\(task)")
        #expect(task["error"]?.stringValue?.contains("/nonexistent/srun") == true, "\(task)")
    }
}

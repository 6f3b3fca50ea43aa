import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The daemon's metrics end to end: real daemons running mock-agent tasks to each end, the
/// text read by Prometheus' own parsers, served over a real TCP socket and scraped by a real
/// Prometheus server.
@Suite struct MetricsDaemonTests {
    static let settings = """
        "providerConcurrency": {"mock": 2}, "retryBackoff": {"initial": "50ms", "multiplier": 1, "max": "50ms", "jitter": 0}
        """
    static let agents = #""flaky": {"command": ["drover-mock-agent"], "provider": "flaky"}"#

    /// Each task's worker pid is gone (and its process group).
    func expectWorkersGone(_ d: DaemonFixture, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        for id in ids {
            guard let pid = try d.task(id)["pid"]?.intValue.map({ Int32($0) }) else { continue }
            #expect(eventually { !Processes.isAlive(pid) && Processes.liveMembers(ofGroup: pid).isEmpty }, "worker of \(id) left behind",
                    sourceLocation: sourceLocation)
        }
    }

    @Test func droverMetricsCountsTasksAttemptsPoolsUsageAndLatencies() throws {
        let d = try DaemonFixture(settings: Self.settings, agents: Self.agents)
        let done = [try d.launch("@usage 1000 200 0.25\n@result one"), try d.launch("@usage 500 100\n@result two")]
        let failed = try d.launch("@error boom")
        let retried = try d.launch("@fail-attempts 1 50ms\n@result second time", agent: "flaky")
        #expect(try d.run(["wait"] + done + [failed, retried]).status == 1)
        #expect(try d.status(failed) == "error" && d.status(retried) == "completed")
        let hanging = [try d.launch("@hang"), try d.launch("@hang")]
        #expect(eventually { hanging.allSatisfy { (try? d.status($0)) == "running" } })
        let queued = try d.launch("@result later")
        let cancelled = try d.launch("@result never")
        _ = try d.ok(["cancel", cancelled])
        #expect(try d.status(queued) == "pending")

        let text = try d.run(["metrics"])
        #expect(text.status == 0, "\(text.stderr)")
        let m = try ScrapedMetrics(text.stdout, folder: d.folder)
        #expect(m.series("drover_tasks") == [
            ["status": "completed", "reason": "result"]: 3, ["status": "error", "reason": "worker_error"]: 1,
            ["status": "cancelled", "reason": "user"]: 1, ["status": "running", "reason": ""]: 2, ["status": "pending", "reason": ""]: 1,
        ])
        let mock = ["pool": "provider:mock"]
        #expect(m.value("drover_pool_slots_in_use", mock) == 2 && m.value("drover_pool_limit", mock) == 2)
        #expect(m.value("drover_pool_effective_limit", mock) == 2 && m.value("drover_pool_waiting", mock) == 1)
        #expect(m.value("drover_pool_cooldown_seconds", mock) == 0)
        #expect(m.value("drover_slots_in_use") == 2)
        // Two completed, one failed, two running in the mock pool; two attempts of the flaky task (its
        // provider has no limit of its own: its pool is its key).
        #expect(m.series("drover_attempts_total") == [mock: 5, ["pool": "key:flaky"]: 2])
        #expect(m.series("drover_retries_total") == [["pool": "key:flaky", "reason": "worker_error"]: 1])
        let spent = ["provider": "mock", "model": ""]
        #expect(m.value("drover_tokens_total", spent.merging(["kind": "input"]) { $1 }) == 1500)
        #expect(m.value("drover_tokens_total", spent.merging(["kind": "output"]) { $1 }) == 300)
        #expect(m.value("drover_cost_usd_total", spent) == 0.25)
        // Every spawn, and the run of every task that ended after a start.
        #expect(m.value("drover_spawn_latency_seconds_count") == 7)
        #expect(m.value("drover_spawn_latency_seconds_bucket", ["le": "+Inf"]) == 7)
        #expect((m.value("drover_spawn_latency_seconds_sum") ?? 0) > 0)
        #expect(m.value("drover_task_duration_seconds_count", ["status": "completed"]) == 3)
        #expect(m.value("drover_task_duration_seconds_count", ["status": "error"]) == 1)
        #expect(m.value("drover_task_duration_seconds_count", ["status": "cancelled"]) == 0)
        #expect((m.value("drover_open_descriptors") ?? 0) > 3)
        #expect(m.value("drover_writer_backlog_bytes") != nil)
        #expect(m.samples.allSatisfy { $0.name.hasPrefix("drover_") })
        for family in ["drover_tasks gauge", "drover_attempts_total counter", "drover_spawn_latency_seconds histogram"] {
            #expect(m.text.contains("# TYPE \(family)\n"), "\(family)")
        }

        // The running tasks end: the gauges follow, the histogram counts them.
        _ = try d.ok(["cancel"] + hanging + [queued])
        let after = try ScrapedMetrics(try d.run(["metrics"]).stdout, folder: d.folder)
        #expect(after.value("drover_tasks", ["status": "cancelled", "reason": "user"]) == 4)
        #expect(after.value("drover_tasks", ["status": "running", "reason": ""]) == 0)
        #expect(after.value("drover_tasks", ["status": "pending", "reason": ""]) == 0)
        #expect(after.value("drover_task_duration_seconds_count", ["status": "cancelled"]) == 2)
        #expect(after.value("drover_pool_slots_in_use", mock) == 0 && after.value("drover_pool_waiting", mock) == 0)
        try expectWorkersGone(d, done + [failed, retried] + hanging)
    }

    @Test func getMetricsOverTCPAnswersLikeTheCLIAndBadRequestsGet4xx() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 1}")
        let daemon = try MetricsDaemon(d)
        let done = try d.launch("@result ok")
        _ = try d.ok(["wait", done])
        let running = try d.launch("@hang")
        #expect(eventually { (try? d.status(running)) == "running" })
        let waiting = try d.launch("@result later")

        let answer = try RawHTTP.get(port: daemon.port, "/metrics")
        #expect(answer.status == 200 && answer.closed, "\(answer.head)")
        #expect(answer.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(answer.header("Content-Length").flatMap { Int($0) } == answer.body.utf8.count)
        let overHTTP = try ScrapedMetrics(answer.body, folder: d.folder)
        let overCLI = try ScrapedMetrics(try d.run(["metrics"]).stdout, folder: d.folder)
        #expect(overHTTP.series("drover_tasks") == [
            ["status": "completed", "reason": "result"]: 1, ["status": "running", "reason": ""]: 1, ["status": "pending", "reason": ""]: 1,
        ])
        for name in ["drover_tasks", "drover_pool_slots_in_use", "drover_pool_waiting", "drover_pool_limit", "drover_attempts_total",
                     "drover_spawn_latency_seconds_count", "drover_task_duration_seconds_count"] {
            #expect(overHTTP.series(name) == overCLI.series(name), "\(name)")
        }
        let head = try RawHTTP.exchange(port: daemon.port, Array("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(head.status == 200 && head.body.isEmpty && (head.header("Content-Length").flatMap { Int($0) } ?? 0) > 0)

        let before = try #require(try parseObject(try d.ok(["stats", "--json"]))["open_fds"]?.intValue)
        let oversized = "GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "x", count: 20_000) + "\r\n\r\n"
        for (request, status) in [
            ("POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", 405), ("DELETE /metrics HTTP/1.1\r\n\r\n", 405),
            ("GET / HTTP/1.1\r\n\r\n", 404), ("GET /metrics/../etc HTTP/1.1\r\n\r\n", 404), ("hello\r\n\r\n", 400),
            ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400), ("GET /metrics HTTP/2.0\r\n\r\n", 505), (oversized, 431),
            (String(repeating: "\u{1}\u{2}\u{FF}", count: 100) + "\r\n\r\n", 400),
        ] {
            let refused = try RawHTTP.exchange(port: daemon.port, Array(request.utf8))
            #expect(refused.status == status && refused.closed, "\(request.prefix(40).debugDescription): \(refused.head)")
        }
        let post = try RawHTTP.exchange(port: daemon.port, Array("PUT /metrics HTTP/1.1\r\n\r\n".utf8))
        #expect(post.header("Allow") == "GET, HEAD")
        // A client that sends nothing is answered 408 at the deadline, and closed.
        let silent = try RawHTTP.exchange(port: daemon.port, [], timeoutMs: 15_000)
        #expect(silent.status == 408 && silent.closed && silent.elapsedMs >= 4_500, "\(silent.head) after \(silent.elapsedMs) ms")
        // Past 32 connections at once, a client is told to come back (and the others are not hurt).
        var idle: [Int32] = []
        for _ in 0..<32 { idle.append(try openIdleConnection(port: daemon.port)) }
        // The daemon has accepted them all once a later one is answered 503.
        var busy: RawHTTP?
        #expect(eventually { busy = try? RawHTTP.get(port: daemon.port, "/metrics"); return busy?.status == 503 }, "\(busy?.head ?? "")")
        idle.forEach { close($0) }
        #expect(eventually { (try? RawHTTP.get(port: daemon.port, "/metrics"))?.status == 200 })

        // The daemon goes on, and every connection it took is closed again.
        #expect(eventually { (try? parseObject(try d.ok(["stats", "--json"]))["open_fds"]?.intValue) == before },
                "open descriptors did not come back to \(before)")
        _ = try d.ok(["cancel", running, waiting])
        #expect(try daemon.stop(d) == 0)
        try expectWorkersGone(d, [done, running])
    }

    @Test func aRealPrometheusServerScrapesTheDaemon() throws {
        let d = try DaemonFixture()
        let daemon = try MetricsDaemon(d)
        let ids = [try d.launch("@usage 10 5 0.5\n@result one"), try d.launch("@result two")]
        _ = try d.ok(["wait"] + ids)
        let prometheus = try PrometheusServer(scraping: "127.0.0.1:\(daemon.port)", folder: d.folder)
        defer { prometheus.stop() }
        var completed: Double?
        let scraped = eventually(withinMs: 30_000) {
            guard let up = try? prometheus.query("up{job=\"drover\"}"), up.first?.1 == 1 else { return false }
            completed = (try? prometheus.query("sum(drover_tasks{status=\"completed\"})"))?.first?.1
            return completed != nil
        }
        #expect(scraped, "prometheus never scraped the daemon: \(readText(d.folder + "/prometheus.err"))")
        #expect(completed == 2)
        #expect(try prometheus.query("drover_spawn_latency_seconds_count").first?.1 == 2)
        #expect(try prometheus.query("drover_cost_usd_total").first?.1 == 0.5)
        let health = try prometheus.query("scrape_samples_scraped{job=\"drover\"}")
        #expect((health.first?.1 ?? 0) > 50, "\(health)")
        prometheus.stop()
        #expect(try daemon.stop(d) == 0)
        try expectWorkersGone(d, ids)
    }

    @Test func aPortInUseOrABadAddressIsAClearErrorAndChangesNothing() throws {
        let d = try DaemonFixture()
        let holder = try listeningSocket()
        defer { close(holder.fd) }
        let log = d.folder + "/refused.log"
        let pid = try startDrover(["serve", "--metrics-listen", "127.0.0.1:\(holder.port)", "--state-dir", d.state, "--config", d.config], output: log)
        var status: Int32 = 0
        let ended = eventually(withinMs: 10_000) { waitpid(pid, &status, WNOHANG) == pid }
        if !ended {
            kill(pid, SIGKILL)
            _ = waitForExit(pid)
        }
        #expect(ended && (status >> 8) & 0xFF == 5, "serve went on with its metrics port taken")
        #expect(readText(log + ".err").contains("cannot listen for metrics on 127.0.0.1:\(holder.port): address already in use"), "\(readText(log + ".err"))")
        #expect(!FileSystem.exists(d.state + "/drover.sock"))
        let bad = try d.run(["serve", "--metrics-listen", "example.com:9464"])
        #expect(bad.status == 2 && bad.stderr.contains("\"example.com\" is not an IPv4 address"), "\(bad.stderr)")
        // The folder was left free: a daemon starts on it and answers.
        let id = try d.launch("@result fine")
        _ = try d.ok(["wait", id])
        #expect(try d.ok(["metrics"]).contains("drover_tasks{status=\"completed\",reason=\"result\"} 1"))
        try expectWorkersGone(d, [id])
    }

    /// A loopback socket that listens, and its port.
    func listeningSocket() throws -> (fd: Int32, port: Int) {
        let port = try freeLoopbackPort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok, listen(fd, 1) == 0 else {
            close(fd)
            throw TestFailure("cannot hold port \(port): errno \(errno)")
        }
        return (fd, port)
    }

    /// A connection that sends nothing (it holds one of the endpoint's places).
    func openIdleConnection(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("cannot connect to \(port): errno \(errno)")
        }
        return fd
    }
}

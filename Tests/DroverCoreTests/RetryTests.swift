@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

/// SPEC 11 with real mock-agent workers: attempts, backoff, pool cooldowns, fallback models.
@Suite struct RetryTests {
    static func config(_ configure: (inout DroverConfig) -> Void = { _ in }) -> DroverConfig {
        var config = Harness.testConfig()
        config.retry.backoff = Backoff(initialMs: 100, multiplier: 2, maxMs: 1_000, jitter: 0)
        configure(&config)
        return config
    }

    func events(_ h: Harness, _ id: String) throws -> [JSONObject] {
        try readLines(h.store.eventsFile).filter { $0["task_id"]?.stringValue == id }
    }

    @Test func aRefusedAttemptIsTriedAgainNoEarlierThanItsRetryAfter() throws {
        let h = try Harness(config: Self.config())
        let id = try h.submit("@fail-attempts 1 400ms\n@attempt\n@result second time lucky")
        var sawRetryWait = false
        h.onReport = { snapshot in
            if snapshot.id == id, snapshot.status == .pending, snapshot.waitingFor == .retry { sawRetryWait = true }
        }
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .completed && task.attempt == 2)
        #expect(try h.result(id) == "second time lucky")
        #expect(sawRetryWait, "between attempts it is pending, waiting for retry")
        let record = try #require(TaskSnapshot(json: try h.taskJSON(id)))
        #expect(record.attempts.map(\.number) == [1, 2])
        #expect(record.attempts[0].status == .error && record.attempts[0].reason == .workerError)
        let gap = try #require(record.attempts[1].startedMs) - record.attempts[0].endedMs
        // Times are whole milliseconds of two clocks (the loop's and the wall): one may round
        // the other way.
        #expect(gap >= 399, "attempt 2 started \(gap) ms after attempt 1 ended, before its retry-after")
        // One end; the retry is a pending line that names the next attempt.
        let lines = try events(h, id)
        #expect(lines.map { $0["status"]?.stringValue ?? "" } == ["pending", "running", "pending", "running", "completed"])
        #expect(lines[2]["reason"] == "retry" && lines[2]["attempt"] == 2 && lines[3]["attempt"] == 2)
        // Each attempt got its number in its start frame.
        let starts = try readLines(h.store.transcriptFile(id)).filter { $0["type"] == "start" }
        #expect(starts.map { $0["attempt"] } == [1, 2])
        #expect(try readLines(h.store.transcriptFile(id)).contains { $0["text"] == "attempt 2" })
        h.expectNothingLeft(of: id)
    }

    @Test func aCooldownHoldsBackItsOwnPoolOnly() throws {
        let h = try Harness(config: Self.config {
            $0.providerConcurrency = ["mock": 4, "other": 4]
            $0.agents["elsewhere"] = AgentConfig(name: "elsewhere", command: ["drover-mock-agent"], provider: "other")
        })
        // It runs on well past the submissions below, whenever its running report comes.
        let limited = try h.submit("@rate-limit 800ms\n@sleep 600ms\n@result went on")
        var limitedAt: Int64?
        var waitingSeen: WaitReason?
        var later: String?
        var elsewhere: String?
        h.onReport = { [weak h] snapshot in
            guard let h, snapshot.id == limited, snapshot.status == .running, limitedAt == nil else { return }
            // Once the worker runs, its rate limit comes at once: then two more tasks.
            let timer = LoopTimer(loop: h.loop)
            timer.start(after: 100) { [weak h] in
                _ = timer
                guard let h else { return }
                limitedAt = Clock.wallMs()
                later = try? h.submit("@result after the cooldown")
                elsewhere = try? h.submit("@result at once", agent: "elsewhere")
                // Once admitted (its task.json written) it says why it waits.
                let look = LoopTimer(loop: h.loop)
                look.start(after: 100) { [weak h] in
                    _ = look
                    waitingSeen = later.flatMap { h?.supervisor.snapshot($0)?.waitingFor }
                }
            }
        }
        h.run(until: [limited])
        let ended = h.run(until: [later, elsewhere].compactMap { $0 })
        #expect(ended[limited]?.status == .completed, "a rate limit does not stop the worker that got it")
        #expect(waitingSeen == .cooldown)
        let start = try #require(limitedAt)
        let laterStart = try #require(ended[later ?? ""]?.startedMs)
        let elsewhereStart = try #require(ended[elsewhere ?? ""]?.startedMs)
        let pools = try readLines(h.store.eventsFile).filter { $0["pool"] != nil }
        // The cooldown counts from the rate limit, as events.jsonl recorded it.
        let cooledFrom = try #require(pools.first?["t"]?.intValue.map { Int64($0) })
        #expect(laterStart - cooledFrom >= 750, "the cooling pool started a task \(laterStart - cooledFrom) ms into an 800 ms cooldown")
        #expect(elsewhereStart - start < 500, "another pool waited \(elsewhereStart - start) ms")
        #expect(pools.map { $0["status"]?.stringValue ?? "" } == ["cooldown", "cooldown_end"])
        #expect(pools.first?["pool"] == "provider:mock" && pools.first?["caused_by"]?.stringValue == limited)
    }

    @Test func aLongCooldownSendsTheNextAttemptToAFallbackModel() throws {
        let h = try Harness(config: Self.config {
            var agent = AgentConfig(name: "writer", command: ["drover-mock-agent"], provider: "mock", model: "big")
            agent.fallbackModels = ["other/small"]
            agent.fallbackAfter = 500
            $0.agents["writer"] = agent
        })
        // No retry-after: the pool cools down for its backoff (2 s), longer than fallbackAfter.
        let id = try h.submit("@fail-attempts 1\n@result from a fallback", agent: "writer")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .completed && task.model == "small" && task.provider == "other" && task.pool == "key:other/small")
        let record = try #require(TaskSnapshot(json: try h.taskJSON(id)))
        #expect(record.attempts.map { $0.model ?? "" } == ["big", "small"])
        let starts = try readLines(h.store.transcriptFile(id)).filter { $0["type"] == "start" }
        #expect(starts.map { $0["model"] } == ["big", "small"])
        // A new task starts on its own model again.
        let next = try h.submit("@result own model", agent: "writer")
        #expect(h.supervisor.snapshot(next)?.model == "big")
        h.supervisor.cancel(next)
        h.run(until: [next])
    }

    @Test func cancelsAndTtlsAreNeverRetried() throws {
        let h = try Harness(config: Self.config { $0.retry.retryOn = Set(RetryReason.allCases); $0.retry.retries = 5 })
        let ttl = try h.submit("@rate-limit\n@hang") { $0.timers.taskTtl = 300 }
        let cancelled = try h.submit("@rate-limit\n@hang")
        h.onReport = { [unowned h] snapshot in
            if snapshot.id == cancelled, snapshot.status == .running { h.supervisor.cancel(cancelled) }
        }
        let ended = h.run(until: [ttl, cancelled])
        #expect(ended[ttl]?.reason == .ttl && ended[ttl]?.attempt == 1)
        #expect(ended[cancelled]?.reason == .user && ended[cancelled]?.attempt == 1)
        #expect(try TaskSnapshot(json: h.taskJSON(ttl))?.attempts.count == 1)
    }

    @Test func stabilizedLimitsShowInThePoolsFigures() throws {
        let h = try Harness(config: Self.config { $0.providerConcurrency = ["mock": 6] })
        let ids = try (0..<4).map { _ in try h.submit("@sleep 200ms\n@result ok") }
        let limited = try h.submit("@rate-limit 300ms\n@result limited")
        var during: SlotPools.Usage?
        h.onReport = { [unowned h] snapshot in
            if snapshot.id == limited, snapshot.status == .completed || during == nil && snapshot.status == .running {
                let timer = LoopTimer(loop: h.loop)
                timer.start(after: 50) { _ = timer; if during == nil { during = h.supervisor.poolUsage.first { $0.pool == "provider:mock" } } }
            }
        }
        h.run(until: ids + [limited])
        let usage = try #require(during)
        #expect(usage.limit == 6 && usage.effectiveLimit < 6 && usage.cooldownUntilMs != nil, "\(usage)")
    }
}

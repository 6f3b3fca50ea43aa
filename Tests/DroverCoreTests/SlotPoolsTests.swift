@testable import DroverCore
import DroverTestSupport
import Testing

@Suite struct SlotPoolsTests {
    @Test func resolvesTheMostSpecificConfiguredLimit() {
        var config = DroverConfig()
        config.defaultConcurrency = 4
        config.providerConcurrency = ["anthropic": 3, "openai": 2]
        config.modelConcurrency = ["anthropic/claude-opus-4-5": 2, "gpt-5.2": 1]
        // provider/model wins over the bare model and the provider.
        #expect(config.pool(provider: "anthropic", model: "claude-opus-4-5", key: "anthropic/claude-opus-4-5")
            == PoolAssignment(id: "model:anthropic/claude-opus-4-5", limit: 2))
        // A bare model key matches under any provider.
        #expect(config.pool(provider: "openai", model: "gpt-5.2", key: "openai/gpt-5.2") == PoolAssignment(id: "model:gpt-5.2", limit: 1))
        // Two models of one provider without model limits share the provider's pool.
        #expect(config.pool(provider: "anthropic", model: "claude-haiku-4-5", key: "anthropic/claude-haiku-4-5")
            == PoolAssignment(id: "provider:anthropic", limit: 3))
        #expect(config.pool(provider: "anthropic", model: "claude-sonnet-4-5", key: "anthropic/claude-sonnet-4-5")
            == PoolAssignment(id: "provider:anthropic", limit: 3))
        // Nothing configured: the task's own key with the default limit.
        #expect(config.pool(provider: "google", model: "gemini", key: "google/gemini") == PoolAssignment(id: "key:google/gemini", limit: 4))
        config.defaultConcurrency = nil
        #expect(config.pool(provider: nil, model: nil, key: "explore") == PoolAssignment(id: "key:explore", limit: 5))
    }

    @Test func grantsUpToTheLimitThenQueuesInOrder() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 2)
        let a = pools.request(taskID: "a", in: pool)
        let b = pools.request(taskID: "b", in: pool)
        #expect(a?.slot == 0 && b?.slot == 1)
        #expect(pools.request(taskID: "c", in: pool) == nil)
        #expect(pools.request(taskID: "d", in: pool) == nil)
        #expect(pools.running(in: "p") == 2 && pools.waiting(in: "p") == 2)
        // The freed slot goes straight to the oldest waiter, with the freed slot number.
        #expect(pools.release(b!) == [SlotGrant(taskID: "c", pool: "p", slot: 1)])
        #expect(pools.release(a!) == [SlotGrant(taskID: "d", pool: "p", slot: 0)])
        #expect(pools.waiting(in: "p") == 0)
    }

    @Test func zeroMeansUnlimited() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "free", limit: 0)
        for i in 0..<1000 { #expect(pools.request(taskID: "t\(i)", in: pool) != nil) }
        #expect(pools.running(in: "free") == 1000)
    }

    @Test func aFullPoolNeverDelaysAnotherPool() {
        let pools = SlotPools()
        let slow = PoolAssignment(id: "slow", limit: 1)
        let fast = PoolAssignment(id: "fast", limit: 1)
        #expect(pools.request(taskID: "s1", in: slow) != nil)
        #expect(pools.request(taskID: "s2", in: slow) == nil)
        #expect(pools.request(taskID: "s3", in: slow) == nil)
        #expect(pools.request(taskID: "f1", in: fast) != nil)
    }

    @Test func withdrawingAWaiterRemovesExactlyThatOne() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 1)
        let first = pools.request(taskID: "a", in: pool)!
        _ = pools.request(taskID: "b", in: pool)
        _ = pools.request(taskID: "c", in: pool)
        #expect(pools.withdraw(taskID: "b"))
        #expect(!pools.withdraw(taskID: "b"))
        #expect(pools.release(first).map(\.taskID) == ["c"])
    }

    @Test func theGlobalCapIsSharedAndServesTheOldestWaiterFirst() {
        let pools = SlotPools(globalLimit: 2)
        let x = PoolAssignment(id: "x", limit: 5)
        let y = PoolAssignment(id: "y", limit: 5)
        let x1 = pools.request(taskID: "x1", in: x)!
        _ = pools.request(taskID: "x2", in: x)!
        #expect(pools.request(taskID: "y1", in: y) == nil)  // global cap
        #expect(pools.request(taskID: "x3", in: x) == nil)
        // y1 waited longer than x3, so it gets the freed global slot although x1 was in x.
        #expect(pools.release(x1).map(\.taskID) == ["y1"])
        #expect(pools.totalRunning == 2 && pools.totalWaiting == 1)
    }

    @Test func releasingManyHandsOffInTheSameCall() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 3)
        let grants = (0..<3).compactMap { pools.request(taskID: "r\($0)", in: pool) }
        for i in 0..<5 { _ = pools.request(taskID: "w\(i)", in: pool) }
        var started: [String] = []
        for grant in grants { started += pools.release(grant).map(\.taskID) }
        #expect(started == ["w0", "w1", "w2"])
    }
}

/// SPEC 11 on the pool type alone: cooldowns, adaptive limits, retries at the head.
@Suite struct PoolRateLimitTests {
    @Test func aCooldownBlocksOnlyItsPoolsAndEndsOnItsTime() {
        let pools = SlotPools()
        let anthropic = PoolAssignment(id: "provider:anthropic", limit: 4)
        let opus = PoolAssignment(id: "model:anthropic/opus", limit: 2)
        let openai = PoolAssignment(id: "provider:openai", limit: 4)
        let a = pools.request(taskID: "a", in: anthropic, provider: "anthropic")
        _ = pools.request(taskID: "o", in: opus, provider: "anthropic")
        _ = pools.request(taskID: "g", in: openai, provider: "openai")
        #expect(a != nil)
        // A provider-wide limit cools every pool of that provider, and no other.
        #expect(pools.pools(limitedBy: "provider:anthropic", provider: "anthropic") == ["model:anthropic/opus", "provider:anthropic"])
        #expect(pools.pools(limitedBy: "model:anthropic/opus", provider: nil) == ["model:anthropic/opus"])
        let cooldowns = pools.rateLimited(["provider:anthropic"], retryAfterMs: 1_000, nowMs: 10_000)
        #expect(cooldowns == [SlotPools.Cooldown(pool: "provider:anthropic", untilMs: 11_000, effectiveLimit: 1, started: true)])
        #expect(pools.request(taskID: "b", in: anthropic, provider: "anthropic") == nil, "no new attempt starts while it cools down")
        #expect(pools.request(taskID: "h", in: openai, provider: "openai") != nil, "another pool is not held up")
        #expect(pools.release(a!).isEmpty, "a freed slot waits for the end of the cooldown")
        #expect(pools.endCooldown("provider:anthropic", nowMs: 10_999) == nil)
        #expect(pools.endCooldown("provider:anthropic", nowMs: 11_000)?.map(\.taskID) == ["b"])
        #expect(pools.cooldownUntil("provider:anthropic") == nil)
    }

    @Test func withoutRetryAfterTheBackoffDoublesAndResetsAfterAQuietMinute() {
        let pools = SlotPools()
        _ = pools.request(taskID: "a", in: PoolAssignment(id: "p", limit: 2))
        #expect(pools.rateLimited(["p"], retryAfterMs: nil, nowMs: 0).first?.untilMs == 2_000)
        _ = pools.endCooldown("p", nowMs: 2_000)
        #expect(pools.rateLimited(["p"], retryAfterMs: nil, nowMs: 3_000).first?.untilMs == 7_000)
        _ = pools.endCooldown("p", nowMs: 7_000)
        #expect(pools.rateLimited(["p"], retryAfterMs: nil, nowMs: 8_000).first?.untilMs == 16_000)
        _ = pools.endCooldown("p", nowMs: 16_000)
        #expect(pools.rateLimited(["p"], retryAfterMs: nil, nowMs: 80_000).first?.untilMs == 82_000, "a quiet minute starts afresh")
    }

    @Test func theEffectiveLimitHalvesOncePerCooldownAndClimbsBackByOne() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 8)
        var grants = (0..<8).compactMap { pools.request(taskID: "t\($0)", in: pool) }
        #expect(grants.count == 8)
        // Multiplicative decrease, once per cooldown however many limits come.
        #expect(pools.rateLimited(["p"], retryAfterMs: 100, nowMs: 0).first?.effectiveLimit == 4)
        #expect(pools.rateLimited(["p"], retryAfterMs: 200, nowMs: 50).first?.effectiveLimit == 4)
        #expect(pools.effectiveLimit(of: "p") == 4)
        for i in 0..<6 { _ = pools.request(taskID: "w\(i)", in: pool) }
        #expect(pools.endCooldown("p", nowMs: 200) == nil, "the second limit made the cooldown longer")
        #expect(pools.endCooldown("p", nowMs: 250)?.isEmpty == true)
        // Running 8 over an effective 4: the slots that come back wait until only 3 run.
        for grant in grants.prefix(4) { #expect(pools.release(grant).isEmpty) }
        #expect(pools.release(grants[4]).map(\.taskID) == ["w0"])
        grants = Array(grants.dropFirst(5))
        // Additive increase: one more after `effective` attempts complete without a limit.
        for _ in 0..<3 { #expect(pools.attemptSucceeded(in: "p").isEmpty) }
        #expect(pools.attemptSucceeded(in: "p").map(\.taskID) == ["w1"], "the fourth completion raises 4 to 5")
        #expect(pools.effectiveLimit(of: "p") == 5)
        for _ in 0..<5 { _ = pools.attemptSucceeded(in: "p") }
        #expect(pools.effectiveLimit(of: "p") == 6)
        for _ in 0..<6 { _ = pools.attemptSucceeded(in: "p") }
        for _ in 0..<7 { _ = pools.attemptSucceeded(in: "p") }
        #expect(pools.effectiveLimit(of: "p") == 8, "back at the ceiling")
        for _ in 0..<20 { _ = pools.attemptSucceeded(in: "p") }
        #expect(pools.effectiveLimit(of: "p") == 8, "never above it")
        #expect(pools.usage.first?.limit == 8)
    }

    @Test func neverBelowOneAndAPoolWithoutLimitsNeverChanges() {
        let pools = SlotPools()
        _ = pools.request(taskID: "a", in: PoolAssignment(id: "p", limit: 3))
        #expect(pools.rateLimited(["p"], retryAfterMs: 10, nowMs: 0).first?.effectiveLimit == 1)
        _ = pools.endCooldown("p", nowMs: 10)
        #expect(pools.rateLimited(["p"], retryAfterMs: 10, nowMs: 20).first?.effectiveLimit == 1)
        let quiet = SlotPools()
        for i in 0..<5 { _ = quiet.request(taskID: "q\(i)", in: PoolAssignment(id: "q", limit: 5)) }
        #expect(quiet.effectiveLimit(of: "q") == 5 && quiet.attemptSucceeded(in: "q").isEmpty && quiet.effectiveLimit(of: "q") == 5)
        let fixed = SlotPools(adaptive: false)
        for i in 0..<4 { _ = fixed.request(taskID: "f\(i)", in: PoolAssignment(id: "f", limit: 4)) }
        #expect(fixed.rateLimited(["f"], retryAfterMs: 10, nowMs: 0).first?.effectiveLimit == 4, "adaptiveConcurrency off: the limit stays")
    }

    @Test func theLimitSettlesWhereTheProviderAdmitsAndIsProbedAgainAfterAQuietMinute() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 16)
        let grants = (0..<16).compactMap { pools.request(taskID: "t\($0)", in: pool) }
        // Sixteen run; twelve are refused during the cooldown: the provider admits four.
        for i in 0..<12 { _ = pools.rateLimited(["p"], source: "p", retryAfterMs: 1_000, nowMs: UInt64(i)) }
        #expect(pools.effectiveLimit(of: "p") == 8, "at once: half of what runs")
        _ = pools.endCooldown("p", nowMs: 1_011)
        #expect(pools.effectiveLimit(of: "p") == 4, "after it: what the provider admitted")
        for grant in grants.prefix(12) { _ = pools.release(grant) }
        // At that estimate, completions raise nothing until a quiet minute has passed...
        for i in 0..<20 { #expect(pools.attemptSucceeded(in: "p", nowMs: 2_000 + UInt64(i)).isEmpty) }
        #expect(pools.effectiveLimit(of: "p") == 4)
        // ...then it probes above, one at a time.
        for i in 0..<4 { _ = pools.attemptSucceeded(in: "p", nowMs: 70_000 + UInt64(i)) }
        #expect(pools.effectiveLimit(of: "p") == 5)
        // A limit refused at five says five was one too many.
        _ = pools.rateLimited(["p"], source: "p", retryAfterMs: 1_000, nowMs: 80_000)
        _ = pools.endCooldown("p", nowMs: 81_000)
        #expect(pools.effectiveLimit(of: "p") == 3, "four running then, one refused")
    }

    @Test func noCooldownLastsLongerThanAnHour() {
        let pools = SlotPools()
        _ = pools.request(taskID: "a", in: PoolAssignment(id: "p", limit: 2))
        let until = pools.rateLimited(["p"], retryAfterMs: 2_306_203_426_088, nowMs: 1_000).first?.untilMs
        #expect(until == 1_000 + UInt64(SlotPools.maxCooldownMs))
    }

    @Test func aRetryQueuesAtTheHead() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 1)
        let running = pools.request(taskID: "a", in: pool)!
        _ = pools.request(taskID: "b", in: pool)
        _ = pools.request(taskID: "c", in: pool)
        _ = pools.request(taskID: "retried", in: pool, atHead: true)
        #expect(pools.waiters(in: "p") == ["retried", "b", "c"])
        #expect(pools.release(running).map(\.taskID) == ["retried"])
    }
}

/// Priorities within a pool (SPEC 13): higher first, FIFO among equals, a retried attempt
/// at the head above all; under a global cap the first waiter across pools by the same rule.
@Suite struct SlotPriorityTests {
    @Test func aHigherPriorityStartsFirstAndEqualsKeepTheirOrder() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "p", limit: 1)
        #expect(pools.request(taskID: "running", in: pool) != nil)
        for (id, priority) in [("low", -1), ("a", 0), ("high", 5), ("b", 0), ("higher", 9), ("c", 0)] {
            #expect(pools.request(taskID: id, in: pool, priority: priority) == nil)
        }
        #expect(pools.request(taskID: "retried", in: pool, atHead: true) == nil)
        #expect(pools.waiters(in: "p") == ["retried", "higher", "high", "a", "b", "c", "low"])
        #expect(pools.withdraw(taskID: "high"))
        var order: [String] = []
        var grant = SlotGrant(taskID: "running", pool: "p", slot: 0)
        while let next = pools.release(grant).first {
            order.append(next.taskID)
            grant = next
        }
        #expect(order == ["retried", "higher", "a", "b", "c", "low"])
        #expect(pools.waiting(in: "p") == 0)
    }

    @Test func underAGlobalCapThePriorityWinsAcrossPools() {
        let pools = SlotPools(globalLimit: 1)
        let first = PoolAssignment(id: "first", limit: 0)
        let second = PoolAssignment(id: "second", limit: 0)
        let running = pools.request(taskID: "running", in: first)!
        #expect(pools.request(taskID: "old", in: first) == nil)
        #expect(pools.request(taskID: "urgent", in: second, priority: 3) == nil)
        #expect(pools.release(running).map(\.taskID) == ["urgent"], "priority over age")
    }
}

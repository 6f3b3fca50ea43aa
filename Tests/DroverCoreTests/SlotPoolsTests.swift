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

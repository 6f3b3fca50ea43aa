import DroverCore
import DroverTestSupport
import Testing

/// What a reloaded config changes: which config a client names against the daemon's, and
/// pool limits from the next grant.
@Suite struct ReconfigureTests {
    @Test func aClientNamingNoFileTakesTheDaemonsConfig() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let file = folder + "/config.jsonc"
        try FileSystem.writeFile(file, Array("{}".utf8))
        let loaded = try ConfigLoader.load(file: file)
        #expect(loaded.identity.mismatch(with: ConfigIdentity(path: nil, digest: nil)) == nil)
        #expect(loaded.identity.mismatch(with: ConfigIdentity.named(explicitPath: file, environment: [:])) == nil)
        try FileSystem.writeFile(file, Array("{ }".utf8))
        #expect(loaded.identity.mismatch(with: ConfigIdentity.named(explicitPath: file, environment: [:]))?.contains("has changed") == true)
        let other = folder + "/other.jsonc"
        try FileSystem.writeFile(other, Array("{ }".utf8))
        let named = ConfigIdentity.named(explicitPath: nil, environment: ["DROVER_CONFIG": other])
        #expect(named.path == other)
        #expect(loaded.identity.mismatch(with: named)?.contains("the daemon runs with \(file)") == true)
        #expect(DroverConfig().identity.mismatch(with: named)?.contains("the built-in defaults") == true)
    }

    @Test func newLimitsHoldRunningSlotsAndGrantWaiters() {
        let pools = SlotPools()
        let pool = PoolAssignment(id: "provider:mock", limit: 1)
        let first = pools.request(taskID: "a", in: pool)
        #expect(first != nil)
        #expect(pools.request(taskID: "b", in: pool) == nil)
        #expect(pools.request(taskID: "c", in: pool) == nil)
        var config = DroverConfig()
        config.providerConcurrency["mock"] = 2
        let granted = pools.relimit(global: 0, adaptive: true) { config.limit(ofPool: $0) }
        #expect(granted.map(\.taskID) == ["b"], "one more slot, to the oldest waiter")
        config.providerConcurrency["mock"] = 1
        #expect(pools.relimit(global: 0, adaptive: true) { config.limit(ofPool: $0) }.isEmpty)
        #expect(pools.release(first!).isEmpty, "two run under a limit of one: a freed slot is not given on")
        #expect(config.limit(ofPool: "key:explore") == 5 && config.limit(ofPool: "model:x/y") == 5)
    }
}

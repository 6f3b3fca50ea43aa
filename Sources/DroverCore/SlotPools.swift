/// Which pool a task counts against, and that pool's limit (0 = unlimited).
public struct PoolAssignment: Sendable, Hashable {
    public let id: String
    public let limit: Int
    public init(id: String, limit: Int) {
        self.id = id
        self.limit = limit
    }
}

/// A slot handed to a task: its pool and its number within the pool (0-based; a task can
/// use it to pick a GPU or a port).
public struct SlotGrant: Sendable, Equatable {
    public let taskID: String
    public let pool: String
    public let slot: Int
}

/// Concurrency limits as FIFO slot pools (SPEC section 3). Each pool queues its own waiters,
/// so a full pool never delays another; a global cap, when set, is shared by all. Releasing
/// a slot hands it straight to the next waiter: the grants come back from `release`.
///
/// Rate limits (SPEC section 11): a pool told of one cools down (no grant until it ends),
/// and, when adaptive, its effective limit drops to half of what runs (at most once per
/// cooldown), then climbs back by one after each `effective` attempts that complete without
/// one, up to the configured limit (additive increase, multiplicative decrease). Times are
/// the caller's monotonic milliseconds; the caller ends each cooldown at its time.
public final class SlotPools {
    private final class Pool {
        let id: String
        /// The configured limit: the ceiling (0 = unlimited).
        var limit: Int
        /// Below the ceiling after rate limits; nil at the ceiling.
        var effective: Int?
        var running = 0
        var waiting = PriorityWaitQueue()
        /// Slot numbers given back, lowest last, reused before new ones.
        var freedSlots: [Int] = []
        var nextSlot = 0
        /// Providers whose tasks this pool has held (a provider-wide limit cools them all).
        var providers: Set<String> = []
        var cooldownUntil: UInt64?
        /// The cooldown a limit without retry-after gets: doubling while limits keep coming.
        var backoffMs = 0
        var lastLimitAt: UInt64?
        var loweredThisCooldown = false
        var completionsSinceRaise = 0
        /// At the cooldown's first limit: what ran, and how many of the pool's own workers
        /// were refused during the cooldown. Their difference is what the provider admitted.
        var runningAtFirstLimit = 0
        var refusedThisCooldown = 0
        /// What the provider was last seen to admit at once; above it the limit is probed
        /// again only after a quiet minute.
        var admittedEstimate: Int?

        init(id: String, limit: Int) {
            self.id = id
            self.limit = limit
        }

        var currentLimit: Int { effective ?? limit }
        var hasRoom: Bool { cooldownUntil == nil && (currentLimit == 0 || running < currentLimit) }

        func takeSlot() -> Int {
            running += 1
            if let slot = freedSlots.popLast() { return slot }
            defer { nextSlot += 1 }
            return nextSlot
        }

        func giveBack(_ slot: Int) {
            running -= 1
            // Keep freedSlots sorted descending so popLast yields the lowest number.
            let index = freedSlots.firstIndex { $0 < slot } ?? freedSlots.count
            freedSlots.insert(slot, at: index)
        }
    }

    public private(set) var globalLimit: Int
    public private(set) var adaptive: Bool
    private var pools: [String: Pool] = [:]
    private var globalRunning = 0
    private var nextSequence: Int64 = 0
    private var nextHeadSequence: Int64 = 0
    private var poolOfWaiter: [String: String] = [:]

    /// A cooldown without retry-after starts at this and doubles while limits keep coming.
    static let firstBackoffMs = 2_000
    static let maxBackoffMs = 5 * 60_000
    /// A pool without a limit for this long starts its backoff afresh.
    static let quietMs: UInt64 = 60_000
    /// The longest cooldown, whatever a worker's retry-after says (a quota that resets next
    /// week must not stop the pool until then: its attempts run out instead).
    public static let maxCooldownMs = 60 * 60_000

    public init(globalLimit: Int = 0, adaptive: Bool = true) {
        self.globalLimit = globalLimit
        self.adaptive = adaptive
    }

    private var globalHasRoom: Bool { globalLimit == 0 || globalRunning < globalLimit }

    private func pool(for assignment: PoolAssignment) -> Pool {
        if let pool = pools[assignment.id] { return pool }
        let pool = Pool(id: assignment.id, limit: assignment.limit)
        pools[assignment.id] = pool
        return pool
    }

    /// Asks for a slot: the grant if one is free now, else nil and the task waits its turn
    /// (at the head of the queue for an attempt that is tried again).
    public func request(taskID: String, in assignment: PoolAssignment, provider: String? = nil, atHead: Bool = false,
                        priority: Int = 0) -> SlotGrant? {
        let pool = pool(for: assignment)
        if let provider { pool.providers.insert(provider) }
        if pool.waiting.isEmpty && pool.hasRoom && globalHasRoom {
            globalRunning += 1
            return SlotGrant(taskID: taskID, pool: pool.id, slot: pool.takeSlot())
        }
        if atHead {
            nextHeadSequence -= 1
            pool.waiting.prepend(taskID, sequence: nextHeadSequence)
        } else {
            nextSequence += 1
            pool.waiting.append(taskID, sequence: nextSequence, priority: priority)
        }
        poolOfWaiter[taskID] = pool.id
        return nil
    }

    /// Gives a slot back and returns the waiters that now hold one, oldest first.
    public func release(_ grant: SlotGrant) -> [SlotGrant] {
        guard let pool = pools[grant.pool] else { return [] }
        pool.giveBack(grant.slot)
        globalRunning -= 1
        return grantWaiters(preferring: pool)
    }

    /// New limits from a reloaded config: each pool's from `limitOf(id)`, and the global
    /// cap. Running tasks keep their slots (a pool above its new limit grants nothing until
    /// it is below); the waiters that now hold a slot are returned.
    public func relimit(global: Int, adaptive: Bool, _ limitOf: (String) -> Int) -> [SlotGrant] {
        globalLimit = global
        self.adaptive = adaptive
        for pool in pools.values {
            pool.limit = limitOf(pool.id)
            if let effective = pool.effective, !adaptive || (pool.limit != 0 && effective >= pool.limit) { pool.effective = nil }
        }
        var grants: [SlotGrant] = []
        for pool in pools.values.sorted(by: { $0.id < $1.id }) { grants += grantWaiters(preferring: pool) }
        return grants
    }

    /// Removes a waiting task (cancelled while pending). False if it was not waiting.
    @discardableResult
    public func withdraw(taskID: String) -> Bool {
        guard let poolID = poolOfWaiter.removeValue(forKey: taskID), let pool = pools[poolID] else { return false }
        return pool.waiting.remove(taskID)
    }

    // MARK: rate limits

    /// A cooldown begun or made longer.
    public struct Cooldown: Sendable, Equatable {
        public let pool: String
        public let untilMs: UInt64
        /// The pool's effective limit now (its limit, unless a rate limit lowered it).
        public let effectiveLimit: Int
        /// It was not cooling down before.
        public let started: Bool
    }

    /// Pools a rate limit applies to: with `provider`, every pool holding that provider's
    /// tasks (an account's limit is shared); else only `pool`.
    public func pools(limitedBy pool: String, provider: String?) -> [String] {
        guard let provider else { return pools[pool] == nil ? [] : [pool] }
        return pools.values.filter { $0.id == pool || $0.providers.contains(provider) }.map(\.id).sorted()
    }

    /// A worker was refused for a rate limit: the pools cool down until `retryAfterMs` from
    /// now, or for their backoff, and adapt their limit. `source` is the refused worker's own
    /// pool, whose refusals tell how much the provider admits.
    public func rateLimited(_ ids: [String], source: String? = nil, retryAfterMs: Int?, nowMs: UInt64) -> [Cooldown] {
        var cooldowns: [Cooldown] = []
        for id in ids {
            guard let pool = pools[id] else { continue }
            if let last = pool.lastLimitAt, nowMs - last < Self.quietMs, pool.backoffMs > 0 {
                pool.backoffMs = min(Self.maxBackoffMs, pool.backoffMs * 2)
            } else {
                pool.backoffMs = Self.firstBackoffMs
            }
            pool.lastLimitAt = nowMs
            let until = nowMs + UInt64(min(retryAfterMs ?? pool.backoffMs, Self.maxCooldownMs))
            let started = pool.cooldownUntil == nil
            if started {
                pool.runningAtFirstLimit = pool.running
                pool.refusedThisCooldown = 0
            }
            if id == source { pool.refusedThisCooldown += 1 }
            guard started || until > pool.cooldownUntil! else { continue }
            pool.cooldownUntil = max(pool.cooldownUntil ?? 0, until)
            if adaptive && !pool.loweredThisCooldown {
                pool.effective = max(1, pool.running / 2)
                if pool.limit != 0 && pool.effective! >= pool.limit { pool.effective = nil }
                pool.loweredThisCooldown = true
                pool.completionsSinceRaise = 0
            }
            cooldowns.append(Cooldown(pool: id, untilMs: pool.cooldownUntil!, effectiveLimit: pool.currentLimit, started: started))
        }
        return cooldowns
    }

    /// Ends a pool's cooldown if its time has come; the waiters that now hold a slot.
    public func endCooldown(_ id: String, nowMs: UInt64) -> [SlotGrant]? {
        guard let pool = pools[id], let until = pool.cooldownUntil, until <= nowMs else { return nil }
        pool.cooldownUntil = nil
        pool.loweredThisCooldown = false
        if adaptive && pool.refusedThisCooldown > 0 {
            // What ran when the limits began, less what was refused, is what the provider
            // admits: a closer decrease than a half (sixteen running, twelve refused: four).
            let admitted = max(1, pool.runningAtFirstLimit - pool.refusedThisCooldown)
            pool.admittedEstimate = admitted
            pool.effective = pool.limit != 0 && admitted >= pool.limit ? nil : admitted
            pool.completionsSinceRaise = 0
        }
        return grantWaiters(preferring: pool)
    }

    /// When the pool's cooldown ends, if it is cooling down.
    public func cooldownUntil(_ id: String) -> UInt64? { pools[id]?.cooldownUntil }

    /// An attempt in the pool completed without a rate limit: after `effective` of those,
    /// the effective limit climbs by one, back to the ceiling. The waiters that gained a slot.
    public func attemptSucceeded(in id: String, nowMs: UInt64 = 0) -> [SlotGrant] {
        guard let pool = pools[id], let effective = pool.effective, pool.cooldownUntil == nil else { return [] }
        // At what the provider was seen to admit, probe above it only after a quiet minute:
        // each probe costs a refusal and a cooldown.
        if let admitted = pool.admittedEstimate, effective >= admitted, let last = pool.lastLimitAt, nowMs < last + Self.quietMs { return [] }
        pool.completionsSinceRaise += 1
        guard pool.completionsSinceRaise >= effective else { return [] }
        pool.completionsSinceRaise = 0
        pool.effective = pool.limit != 0 && effective + 1 >= pool.limit ? nil : effective + 1
        return grantWaiters(preferring: pool)
    }

    /// The tasks waiting in a pool, first to start first.
    public func waiters(in id: String) -> [String] { pools[id]?.waiting.ids ?? [] }

    private func grantWaiters(preferring released: Pool) -> [SlotGrant] {
        var grants: [SlotGrant] = []
        // Without a global cap only the released pool can have gained room.
        if globalLimit == 0 {
            while released.hasRoom, let next = released.waiting.popFirst() {
                grants.append(grant(next.taskID, in: released))
            }
            return grants
        }
        // Under a global cap the first waiter among pools with room goes first: the highest
        // priority (a retried attempt's head place above all), then the oldest.
        while globalHasRoom {
            var best: Pool?
            var bestKey = (priority: Int.min, sequence: Int64.max)
            for pool in pools.values where pool.hasRoom {
                if let head = pool.waiting.first, head.priority > bestKey.priority || (head.priority == bestKey.priority && head.sequence < bestKey.sequence) {
                    best = pool
                    bestKey = (head.priority, head.sequence)
                }
            }
            guard let pool = best, let next = pool.waiting.popFirst() else { break }
            grants.append(grant(next.taskID, in: pool))
        }
        return grants
    }

    private func grant(_ taskID: String, in pool: Pool) -> SlotGrant {
        poolOfWaiter[taskID] = nil
        globalRunning += 1
        return SlotGrant(taskID: taskID, pool: pool.id, slot: pool.takeSlot())
    }

    // MARK: inspection

    /// One pool's figures, for reports such as the daemon's `stats`.
    public struct Usage: Sendable, Equatable {
        public let pool: String
        public let limit: Int
        public let effectiveLimit: Int
        public let running: Int
        public let waiting: Int
        /// When its cooldown ends (monotonic ms), if it cools down.
        public let cooldownUntilMs: UInt64?
    }

    /// Every pool that has been used, sorted by id.
    public var usage: [Usage] {
        pools.values.map {
            Usage(pool: $0.id, limit: $0.limit, effectiveLimit: $0.currentLimit, running: $0.running, waiting: $0.waiting.count,
                  cooldownUntilMs: $0.cooldownUntil)
        }.sorted { $0.pool < $1.pool }
    }

    public func running(in poolID: String) -> Int { pools[poolID]?.running ?? 0 }
    public func waiting(in poolID: String) -> Int { pools[poolID]?.waiting.count ?? 0 }
    public func effectiveLimit(of poolID: String) -> Int? { pools[poolID]?.currentLimit }
    public var totalRunning: Int { globalRunning }
    public var totalWaiting: Int { poolOfWaiter.count }
}

/// A pool's waiters (SPEC 13): a higher priority first, FIFO among equals; a retried
/// attempt at the head, above every priority. One FIFO per priority present.
struct PriorityWaitQueue {
    /// The place of a retried attempt: before any priority.
    static let headPriority = Int.max
    private var levels: [Int: WaitQueue] = [:]
    /// The priorities that have waiters, highest first.
    private var priorities: [Int] = []
    private var priorityOf: [String: Int] = [:]

    var count: Int { priorityOf.count }
    var isEmpty: Bool { priorityOf.isEmpty }

    mutating func append(_ taskID: String, sequence: Int64, priority: Int) {
        let priority = min(priority, Self.headPriority - 1)
        addLevel(priority)
        levels[priority]!.append(taskID, sequence: sequence, priority: priority)
        priorityOf[taskID] = priority
    }

    mutating func prepend(_ taskID: String, sequence: Int64) {
        let priority = Self.headPriority
        addLevel(priority)
        levels[priority]!.prepend(taskID, sequence: sequence, priority: priority)
        priorityOf[taskID] = priority
    }

    private mutating func addLevel(_ priority: Int) {
        guard levels[priority] == nil else { return }
        levels[priority] = WaitQueue()
        priorities.insert(priority, at: priorities.firstIndex { $0 < priority } ?? priorities.count)
    }

    var first: WaitQueue.Entry? {
        mutating get {
            guard let top = priorities.first else { return nil }
            return levels[top]!.first
        }
    }

    var ids: [String] { priorities.flatMap { levels[$0]!.ids } }

    mutating func popFirst() -> WaitQueue.Entry? {
        guard let top = priorities.first, let entry = levels[top]!.popFirst() else { return nil }
        priorityOf[entry.taskID] = nil
        dropIfEmpty(top)
        return entry
    }

    mutating func remove(_ taskID: String) -> Bool {
        guard let priority = priorityOf.removeValue(forKey: taskID) else { return false }
        let removed = levels[priority]!.remove(taskID)
        dropIfEmpty(priority)
        return removed
    }

    private mutating func dropIfEmpty(_ priority: Int) {
        guard levels[priority]?.isEmpty == true else { return }
        levels[priority] = nil
        priorities.removeAll { $0 == priority }
    }
}

/// FIFO of waiting task ids that also supports removing any one of them, and putting one
/// at the head (a retried attempt keeps its place).
struct WaitQueue {
    struct Entry {
        let taskID: String
        let sequence: Int64
        let priority: Int
    }
    private var entries: [Entry?] = []
    private var head = 0
    private var positions: [String: Int] = [:]

    var count: Int { positions.count }
    var isEmpty: Bool { positions.isEmpty }

    mutating func append(_ taskID: String, sequence: Int64, priority: Int = 0) {
        positions[taskID] = entries.count
        entries.append(Entry(taskID: taskID, sequence: sequence, priority: priority))
    }

    mutating func prepend(_ taskID: String, sequence: Int64, priority: Int = 0) {
        skipRemoved()
        if head > 0 {
            head -= 1
            entries[head] = Entry(taskID: taskID, sequence: sequence, priority: priority)
            positions[taskID] = head
        } else {
            entries.insert(Entry(taskID: taskID, sequence: sequence, priority: priority), at: 0)
            for (i, entry) in entries.enumerated() {
                if let entry { positions[entry.taskID] = i }
            }
        }
    }

    var first: Entry? {
        mutating get {
            skipRemoved()
            return head < entries.count ? entries[head] : nil
        }
    }

    var ids: [String] { entries[head...].compactMap { $0?.taskID } }

    mutating func popFirst() -> Entry? {
        skipRemoved()
        guard head < entries.count, let entry = entries[head] else { return nil }
        entries[head] = nil
        head += 1
        positions[entry.taskID] = nil
        compact()
        return entry
    }

    mutating func remove(_ taskID: String) -> Bool {
        guard let position = positions.removeValue(forKey: taskID) else { return false }
        entries[position] = nil
        return true
    }

    private mutating func skipRemoved() {
        while head < entries.count && entries[head] == nil { head += 1 }
    }

    private mutating func compact() {
        guard head > 1024 && head * 2 > entries.count else { return }
        entries.removeFirst(head)
        head = 0
        for (i, entry) in entries.enumerated() {
            if let entry { positions[entry.taskID] = i }
        }
    }
}

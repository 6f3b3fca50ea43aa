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
public final class SlotPools {
    private final class Pool {
        let id: String
        var limit: Int
        var running = 0
        var waiting = WaitQueue()
        /// Slot numbers given back, lowest last, reused before new ones.
        var freedSlots: [Int] = []
        var nextSlot = 0

        init(id: String, limit: Int) {
            self.id = id
            self.limit = limit
        }

        var hasRoom: Bool { limit == 0 || running < limit }

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

    public let globalLimit: Int
    private var pools: [String: Pool] = [:]
    private var globalRunning = 0
    private var nextSequence: UInt64 = 0
    private var poolOfWaiter: [String: String] = [:]

    public init(globalLimit: Int = 0) {
        self.globalLimit = globalLimit
    }

    private var globalHasRoom: Bool { globalLimit == 0 || globalRunning < globalLimit }

    private func pool(for assignment: PoolAssignment) -> Pool {
        if let pool = pools[assignment.id] { return pool }
        let pool = Pool(id: assignment.id, limit: assignment.limit)
        pools[assignment.id] = pool
        return pool
    }

    /// Asks for a slot: the grant if one is free now, else nil and the task waits its turn.
    public func request(taskID: String, in assignment: PoolAssignment) -> SlotGrant? {
        let pool = pool(for: assignment)
        if pool.waiting.isEmpty && pool.hasRoom && globalHasRoom {
            globalRunning += 1
            return SlotGrant(taskID: taskID, pool: pool.id, slot: pool.takeSlot())
        }
        nextSequence += 1
        pool.waiting.append(taskID, sequence: nextSequence)
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

    /// Removes a waiting task (cancelled while pending). False if it was not waiting.
    @discardableResult
    public func withdraw(taskID: String) -> Bool {
        guard let poolID = poolOfWaiter.removeValue(forKey: taskID), let pool = pools[poolID] else { return false }
        return pool.waiting.remove(taskID)
    }

    private func grantWaiters(preferring released: Pool) -> [SlotGrant] {
        var grants: [SlotGrant] = []
        // Without a global cap only the released pool can have gained room.
        if globalLimit == 0 {
            while released.hasRoom, let next = released.waiting.popFirst() {
                grants.append(grant(next.taskID, in: released))
            }
            return grants
        }
        // Under a global cap the oldest waiter among pools with room goes first.
        while globalHasRoom {
            var best: Pool?
            var bestSequence = UInt64.max
            for pool in pools.values where pool.hasRoom {
                if let head = pool.waiting.first, head.sequence < bestSequence {
                    best = pool
                    bestSequence = head.sequence
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
        public let running: Int
        public let waiting: Int
    }

    /// Every pool that has been used, sorted by id.
    public var usage: [Usage] {
        pools.values.map { Usage(pool: $0.id, limit: $0.limit, running: $0.running, waiting: $0.waiting.count) }.sorted { $0.pool < $1.pool }
    }

    public func running(in poolID: String) -> Int { pools[poolID]?.running ?? 0 }
    public func waiting(in poolID: String) -> Int { pools[poolID]?.waiting.count ?? 0 }
    public var totalRunning: Int { globalRunning }
    public var totalWaiting: Int { poolOfWaiter.count }
}

/// FIFO of waiting task ids that also supports removing any one of them.
struct WaitQueue {
    struct Entry {
        let taskID: String
        let sequence: UInt64
    }
    private var entries: [Entry?] = []
    private var head = 0
    private var positions: [String: Int] = [:]

    var count: Int { positions.count }
    var isEmpty: Bool { positions.isEmpty }

    mutating func append(_ taskID: String, sequence: UInt64) {
        positions[taskID] = entries.count
        entries.append(Entry(taskID: taskID, sequence: sequence))
    }

    var first: Entry? {
        mutating get {
            skipRemoved()
            return head < entries.count ? entries[head] : nil
        }
    }

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

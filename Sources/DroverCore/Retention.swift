/// Which ended tasks the daemon removes by itself (SPEC 15): those that ended more than
/// `keepEndedMs` ago, and the oldest beyond the newest `maxEnded`. Nil keeps them all.
public struct Retention: Sendable, Equatable {
    public var keepEndedMs: Int?
    public var maxEnded: Int?

    public init(keepEndedMs: Int? = nil, maxEnded: Int? = nil) {
        self.keepEndedMs = keepEndedMs
        self.maxEnded = maxEnded
    }

    public var isEnabled: Bool { keepEndedMs != nil || maxEnded != nil }

    /// What a sweep at `nowMs` removes, and when the next one is due (wall-clock ms; nil when
    /// no age rule will ever remove what is left). `ended` is every ended task with its end,
    /// in any order; `protected` are tasks that must stay (a pending task depends on them).
    public func sweep(ended: [(id: String, endedMs: Int64)], protected: Set<String>, nowMs: Int64) -> (remove: [String], nextDueMs: Int64?) {
        let candidates = ended.filter { !protected.contains($0.id) }.sorted { ($0.endedMs, $0.id) < ($1.endedMs, $1.id) }
        var remove: Set<String> = []
        if let maxEnded {
            // Protected tasks count as kept: the newest maxEnded of all ended tasks stay.
            let excess = ended.count - maxEnded
            if excess > 0 { for task in candidates.prefix(excess) { remove.insert(task.id) } }
        }
        var nextDueMs: Int64?
        if let keepEndedMs {
            let cutoff = nowMs - Int64(keepEndedMs)
            for task in candidates where !remove.contains(task.id) {
                if task.endedMs <= cutoff {
                    remove.insert(task.id)
                } else {
                    nextDueMs = task.endedMs + Int64(keepEndedMs)
                    break
                }
            }
        }
        return (candidates.map(\.id).filter(remove.contains), nextDueMs)
    }
}

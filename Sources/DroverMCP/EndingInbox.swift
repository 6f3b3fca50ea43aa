import DroverTaskNotices
import Synchronization

/// The ends of the server's tasks that its next tool answer reports, each once. Many
/// clients drop MCP notifications (Claude Code does), but every client reads tool answers.
/// An answer that itself tells a task's end (its result, its cancellation) settles it: the
/// end is not repeated, whether the watcher saw it before that answer or sees it after.
final class EndingInbox: Sendable {
    private struct State {
        var pending: [TaskEnding] = []
        /// Ends told by an answer before the watcher reported them, oldest first.
        var toldEarly: [String] = []
    }

    private let state = Mutex(State())
    /// toldEarly keeps ids of tasks the watcher may never report (a task of another
    /// client read with background_output), so it is bounded.
    private static let toldEarlyLimit = 4096

    /// A task's end, as the watcher saw it.
    func add(_ ending: TaskEnding) {
        state.withLock { state in
            if let index = state.toldEarly.firstIndex(of: ending.taskID) {
                state.toldEarly.remove(at: index)
            } else {
                state.pending.append(ending)
            }
        }
    }

    /// The ends to report now, oldest first, leaving out those `told` (the answer being
    /// sent says them itself).
    func take(excluding told: [String]) -> [TaskEnding] {
        state.withLock { state in
            let toldSet = Set(told)
            let reported = state.pending.filter { !toldSet.contains($0.taskID) }
            let pendingIDs = Set(state.pending.map(\.taskID))
            state.pending = []
            for id in toldSet where !pendingIDs.contains(id) && !state.toldEarly.contains(id) {
                state.toldEarly.append(id)
            }
            if state.toldEarly.count > Self.toldEarlyLimit {
                state.toldEarly.removeFirst(state.toldEarly.count - Self.toldEarlyLimit)
            }
            return reported
        }
    }
}

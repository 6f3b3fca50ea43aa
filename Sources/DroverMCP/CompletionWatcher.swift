import DroverCore
import DroverDaemon
import DroverTaskNotices
import DroverWire
import Synchronization

/// Follows the ends of the tasks the MCP server launched in the background: `notify`
/// hears of each task's end exactly once, however it ended. One `events --follow` stream from
/// the daemon, opened before the first launch (so no end can slip past) and opened again
/// after the daemon went away; on reopening, tasks that ended meanwhile are found by
/// asking for their status.
final class CompletionWatcher: Sendable {
    /// What a notification says about a task besides its id.
    struct Watched: Sendable {
        let description: String
        let agent: String
    }

    struct Ending: Sendable {
        let taskID: String
        let sessionID: String
        let status: TaskStatus
        let reason: String?
        let watched: Watched

        var ending: TaskEnding {
            TaskEnding(taskID: taskID, description: watched.description, agent: watched.agent, status: status, reason: reason)
        }
    }

    private struct State {
        var following = false
        var watched: [String: Watched] = [:]
        /// Ends seen before their launch answer was handled, so watch() can still report them.
        var recentEnds: [String: TaskEvent] = [:]
        var recentOrder: [String] = []
    }

    private let gateway: DaemonGateway
    private let notify: @Sendable (Ending) -> Void
    private let state = Mutex(State())
    private static let recentLimit = 4096

    init(gateway: DaemonGateway, notify: @escaping @Sendable (Ending) -> Void) {
        self.gateway = gateway
        self.notify = notify
    }

    /// Opens the event stream unless it is open.
    func ensureFollowing() async throws {
        let start = state.withLock { state -> Bool in
            if state.following { return false }
            state.following = true
            return true
        }
        guard start else { return }
        do {
            try await gateway.stream(EventsRequest(follow: true), handle: { [self] frame in
                if case .event(let event) = frame { handle(event: event) }
                return false
            }, ended: { [self] in
                state.withLock { $0.following = false }
                Task { await followAgain() }
            })
        } catch {
            state.withLock { $0.following = false }
            throw error
        }
        await catchUp()
    }

    /// The daemon went away while tasks are watched: connect again (which starts a new
    /// daemon; its recovery ends the tasks that were running as lost) so their ends are
    /// still reported. A few tries, further apart each time; then the next launch tries.
    private func followAgain() async {
        var delayMs = 200
        for _ in 0..<6 {
            guard state.withLock({ !$0.watched.isEmpty && !$0.following }) else { return }
            try? await Task.sleep(for: .milliseconds(delayMs))
            if (try? await ensureFollowing()) != nil { return }
            delayMs *= 2
        }
    }

    /// Reports the task's end when it comes (or if it already came).
    func watch(_ taskID: String, _ watched: Watched) {
        let early = state.withLock { state -> TaskEvent? in
            if let event = state.recentEnds.removeValue(forKey: taskID) { return event }
            state.watched[taskID] = watched
            return nil
        }
        if let early { report(early, watched) }
    }

    private func handle(event: TaskEvent) {
        guard event.status.isTerminal else { return }
        let id = event.taskID
        let watched = state.withLock { state -> Watched? in
            if let watched = state.watched.removeValue(forKey: id) { return watched }
            state.recentEnds[id] = event
            state.recentOrder.append(id)
            if state.recentOrder.count > Self.recentLimit {
                let dropped = state.recentOrder.takeFirst(Self.recentLimit / 2)
                for old in dropped { state.recentEnds[old] = nil }
            }
            return nil
        }
        if let watched { report(event, watched) }
    }

    private func report(_ event: TaskEvent, _ watched: Watched) {
        notify(Ending(taskID: event.taskID, sessionID: event.sessionID, status: event.status, reason: event.reason?.rawValue, watched: watched))
    }

    /// Reports the watched tasks that have ended by the daemon's own account, whether or not
    /// their event has arrived: on reopening the stream, and before each tool answer, so that
    /// an end the model could already know of (`drover wait` returned) is never missing.
    func catchUp() async {
        let ids = state.withLock { Array($0.watched.keys) }
        guard !ids.isEmpty, let answer = try? await gateway.call(StatusRequest(ids: ids)) else { return }
        for task in answer.tasks where task.status.isTerminal {
            guard let watched = state.withLock({ $0.watched.removeValue(forKey: task.id) }) else { continue }
            report(TaskEvent(atMs: 0, taskID: task.id, sessionID: task.sessionID, status: task.status,
                             reason: task.json["reason"]?.stringValue.flatMap(TaskReason.init(rawValue:))), watched)
        }
    }
}

extension Array {
    /// Removes and returns the first `count` elements.
    fileprivate mutating func takeFirst(_ count: Int) -> [Element] {
        let head = Array(prefix(count))
        removeSubrange(0..<Swift.min(count, self.count))
        return head
    }
}

import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire
import Glibc

/// `drover top`: a live full-screen view of the pools and tasks, redrawn when the daemon
/// reports a change (its `events` stream), with keys to follow a transcript and to cancel.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live full-screen view: pools, running and pending tasks, the latest ends; keys to follow and cancel.",
        discussion: "Keys: ↑/↓ (or k/j) select, Enter follows the selected task's transcript (Esc goes back), c cancels it (y confirms), q quits. Redrawn when the daemon reports a change; the clock and the durations tick once a second on screen only."
    )

    @OptionGroup var client: ClientOptions

    func run() throws {
        guard isatty(0) == 1, isatty(1) == 1 else {
            Terminal.error("drover top: needs a terminal (for scripts: drover status --json, drover stats --json, drover events --follow)")
            throw ExitCode(2)
        }
        // Subscribed before the first look, so no change falls between the two.
        let events = try client.connect()
        let session: TopSession
        do {
            try events.send(EventsRequest(follow: true))
            guard case .following? = try events.next(answering: EventsRequest.self) else {
                throw ClientError(message: "the daemon did not start the events stream", exitCode: 5)
            }
            session = TopSession(state: client.state, events: events)
            try session.refresh()
        } catch let error as ClientError {
            Terminal.error("drover top: \(error)")
            throw ExitCode(error.exitCode)
        } catch let failure as TopFailure {
            Terminal.error(failure.message)
            throw ExitCode(failure.exitCode)
        }
        var failure: TopFailure?
        do throws(TopFailure) {
            let terminal = try TopTerminal()
            defer { terminal.restore() }
            try session.run(on: terminal)
        } catch {
            failure = error
        }
        // Printed once the normal screen is back, so it stays visible.
        if let failure {
            Terminal.error(failure.message)
            throw ExitCode(failure.exitCode)
        }
    }
}

/// top's connections and what it shows: the events stream, a transcript followed, cancels
/// under way; each change of the daemon's reported there is fetched again and redrawn.
final class TopSession {
    private let state: StateFolder
    private let events: ControlClient
    private var transcript: ControlClient?
    private var cancels: [(id: String, connection: ControlClient)] = []
    private var view = TopView()
    /// Tasks whose end the stream reported, the newest first.
    private var endsSeen: [String] = []
    /// When the first change not yet fetched was reported (monotonic ms): a burst of
    /// changes is fetched once, this long after it began.
    private var changedAtMs: Int64?
    private static let coalesceMs: Int64 = 50
    private static let endsShown = 10

    init(state: StateFolder, events: ControlClient) {
        self.state = state
        self.events = events
    }

    // MARK: the daemon

    private func ask<Call: ControlCall>(_ call: Call) throws(TopFailure) -> Call.Reply {
        do {
            return try ControlClient.connect(state: state, autostart: false).call(call)
        } catch {
            throw TopFailure("drover top: \(error)", exitCode: error.exitCode)
        }
    }

    /// Fetches what is shown: running and pending tasks, the latest ends, the pools.
    func refresh() throws(TopFailure) {
        var active = StatusRequest()
        active.statuses = [.running, .pending]
        let rows = try ask(active).tasks
        var recent = StatusRequest()
        recent.statuses = [.completed, .error, .cancelled]
        recent.limit = Self.endsShown
        var endIDs = endsSeen
        for task in try ask(recent).tasks where !endIDs.contains(task.id) { endIDs.append(task.id) }
        endIDs = Array(endIDs.prefix(Self.endsShown * 2))
        endsSeen = Array(endsSeen.prefix(Self.endsShown * 2))
        // Rows lack the model, attempt, progress and cost: the running tasks' documents have them.
        let runningIDs = rows.filter { $0.status == .running }.map(\.id)
        let documents = runningIDs.isEmpty && endIDs.isEmpty ? [] : try ask(StatusRequest(ids: runningIDs + endIDs)).tasks
        let stats = try ask(StatsRequest())
        view.running = documents.filter { $0.status == .running }.map { TopView.Task(json: $0.json) }
        view.pending = rows.filter { $0.status == .pending }.map { TopView.Task(json: $0.json) }
        view.ended = documents.filter(\.status.isTerminal).map { TopView.Task(json: $0.json) }
            .sorted { ($0.endedMs ?? 0) > ($1.endedMs ?? 0) }.prefix(Self.endsShown).map { $0 }
        view.pools = stats.pools
        view.daemonPid = stats.pid
        view.knownTasks = stats.tasks
        view.keepSelection()
    }

    // MARK: the loop

    func run(on terminal: TopTerminal) throws(TopFailure) {
        var size = terminal.size()
        while true {
            terminal.draw(TopScreen.render(view, nowMs: Clock.wallMs(), width: size.width, height: size.height), width: size.width)
            var fds = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0), pollfd(fd: terminal.signals, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: events.descriptor, events: Int16(POLLIN), revents: 0)]
            // What is polled: a key may open or close connections before their turn below.
            let polledTranscript = transcript
            let polledCancels = cancels
            if let transcript { fds.append(pollfd(fd: transcript.descriptor, events: Int16(POLLIN), revents: 0)) }
            for cancel in cancels { fds.append(pollfd(fd: cancel.connection.descriptor, events: Int16(POLLIN), revents: 0)) }
            // Wakes for the next fetch of a burst of changes, else at the next whole second
            // (the clock and the durations on screen; nothing is asked of the daemon then).
            let now = Clock.wallMs()
            var timeout = Int32(1000 - now % 1000)
            if let changedAtMs { timeout = Int32(max(0, min(Int64(timeout), changedAtMs + Self.coalesceMs - Self.monotonicMs()))) }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { throw TopFailure("drover top: poll: \(String(cString: strerror(errno)))", exitCode: 1) }
            if ready > 0 {
                let readable = { (index: Int) in fds[index].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 }
                if readable(1) {
                    for number in terminal.readSignals() {
                        if number == SIGWINCH { size = terminal.size() }
                        if number == SIGINT { return }
                        if number == SIGTERM || number == SIGHUP { throw TopFailure("drover top: stopped by signal \(number)", exitCode: 128 + number) }
                    }
                }
                if readable(0) {
                    guard let keys = terminal.readKeys() else { return }
                    for key in keys {
                        if try !perform(view.handle(key)) { return }
                    }
                }
                if readable(2) { try readEvents() }
                var next = 3
                if let polledTranscript {
                    if readable(next), polledTranscript === transcript { readTranscript(polledTranscript) }
                    next += 1
                }
                for (offset, cancel) in polledCancels.enumerated() where readable(next + offset) { readCancel(cancel.id, cancel.connection) }
            }
            if let changedAtMs, Self.monotonicMs() >= changedAtMs + Self.coalesceMs {
                self.changedAtMs = nil
                try refresh()
            }
        }
    }

    private static func monotonicMs() -> Int64 { Int64(Clock.monotonicNs() / 1_000_000) }

    /// Does what a key asked; false to quit.
    private func perform(_ action: TopView.Action) throws(TopFailure) -> Bool {
        switch action {
        case .quit: return false
        case .redraw: break
        case .follow(let id):
            do {
                let connection = try ControlClient.connect(state: state, autostart: false)
                try connection.send(LogsRequest(id: id, follow: true))
                transcript = connection
                view.transcript = TopView.Transcript(taskID: id)
            } catch {
                view.footer = .message("cannot follow \(id): \(error)")
            }
        case .unfollow:
            transcript = nil
            view.transcript = nil
        case .cancel(let id):
            // Answered once the task has ended and its processes are reaped: meanwhile the
            // screen stays live, and the answer is read like any other.
            do {
                let connection = try ControlClient.connect(state: state, autostart: false)
                try connection.send(CancelRequest(.ids([id])))
                cancels.append((id, connection))
            } catch {
                view.footer = .message("cannot cancel \(id): \(error)")
            }
        }
        return true
    }

    private func readEvents() throws(TopFailure) {
        let received: (replies: [EventsFrame], closed: Bool)
        do {
            received = try events.receiveAvailable(answering: EventsRequest.self)
        } catch {
            throw TopFailure("drover top: \(error)", exitCode: error.exitCode)
        }
        for frame in received.replies {
            switch frame {
            case .event(let event):
                if event.status.isTerminal {
                    endsSeen.removeAll { $0 == event.taskID }
                    endsSeen.insert(event.taskID, at: 0)
                }
                if changedAtMs == nil { changedAtMs = Self.monotonicMs() }
            case .pool:
                if changedAtMs == nil { changedAtMs = Self.monotonicMs() }
            case .lines, .end, .following:
                break
            }
        }
        if received.closed {
            throw TopFailure("drover top: the daemon stopped (it closed the events stream)", exitCode: 5)
        }
    }

    private func readTranscript(_ connection: ControlClient) {
        do {
            let received = try connection.receiveAvailable(answering: LogsRequest.self)
            for frame in received.replies {
                if case .lines(let text) = frame { view.transcript?.append(text) } else { view.transcript?.ended = true }
            }
            if received.closed {
                view.transcript?.ended = true
                transcript = nil
            }
        } catch {
            view.transcript?.ended = true
            view.footer = .message("transcript: \(error)")
            transcript = nil
        }
    }

    private func readCancel(_ id: String, _ connection: ControlClient) {
        do {
            let received = try connection.receiveAvailable(answering: CancelRequest.self)
            if let answer = received.replies.first {
                view.footer = .message(answer.cancelled.contains(id) ? "\(id) cancelled" : "\(id) had already ended")
            } else if !received.closed {
                return
            } else {
                view.footer = .message("cancel \(id): the daemon closed the connection")
            }
        } catch {
            view.footer = .message("cannot cancel \(id): \(error)")
        }
        cancels.removeAll { $0.connection === connection }
    }
}

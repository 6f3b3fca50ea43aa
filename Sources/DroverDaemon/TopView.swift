import DroverCore
import DroverWire

/// What `drover top` shows and which task is selected: built from the daemon's answers
/// (status rows and documents, stats), changed by keys. No terminal here: `TopScreen`
/// turns it into lines, the command does the I/O.
public struct TopView: Sendable {
    /// A task as top shows it, read from a status row or a task.json document.
    public struct Task: Sendable, Equatable {
        public var id: String
        public var agent: String
        public var model: String?
        public var description: String
        public var status: String
        public var waitingFor: String?
        public var reason: String?
        public var attempt: Int
        public var createdMs: Int64?
        public var startedMs: Int64?
        public var endedMs: Int64?
        public var durationMs: Int?
        public var lastTool: String?
        public var lastMessage: String?
        public var costUsd: Double?

        public init(json task: JSONObject) {
            func time(_ key: String) -> Int64? { task[key]?.stringValue.flatMap(Clock.parseRFC3339) }
            id = task["id"]?.stringValue ?? "?"
            agent = task["agent"]?.stringValue ?? "?"
            model = task["model"]?.stringValue
            description = TaskText.oneLine(task["description"]?.stringValue ?? "")
            status = task["status"]?.stringValue ?? "?"
            waitingFor = task["waiting_for"]?.stringValue
            reason = task["reason"]?.stringValue
            attempt = task["attempt"]?.intValue ?? 0
            createdMs = time("created_at")
            startedMs = time("started_at")
            endedMs = time("ended_at")
            durationMs = task["duration_ms"]?.intValue
            let progress = task["progress"]?.objectValue
            lastTool = progress?["last_tool"]?.stringValue
            lastMessage = progress?["last_message"]?.stringValue.map(TaskText.oneLine)
            costUsd = task["usage"]?.objectValue?["cost_usd"]?.numberValue
        }
    }

    /// The transcript followed (Enter): its lines as readable text, the newest last.
    public struct Transcript: Sendable, Equatable {
        public var taskID: String
        public var lines: [String] = []
        public var ended = false
        /// Lines kept: more than any terminal shows.
        public static let keptLines = 2000

        public init(taskID: String) { self.taskID = taskID }

        public mutating func append(_ text: String) {
            lines += text.split(separator: "\n").map { TaskText.transcriptLine($0) }
            if lines.count > Self.keptLines { lines.removeFirst(lines.count - Self.keptLines) }
        }
    }

    /// The bottom line: the keys, a question, or what the last action did.
    public enum Footer: Sendable, Equatable {
        case keys
        case confirmCancel(String)
        case message(String)
    }

    /// What a key asks the command to do.
    public enum Action: Sendable, Equatable {
        case redraw
        case quit
        case follow(String)
        case unfollow
        case cancel(String)
    }

    public var daemonPid = 0
    public var knownTasks = 0
    public var pools: [StatsReply.Pool] = []
    public var running: [Task] = []
    public var pending: [Task] = []
    /// The latest ends, the newest first.
    public var ended: [Task] = []
    public var selectedID: String?
    public var footer = Footer.keys
    public var transcript: Transcript?

    public init() {}

    /// The tasks in the order they are shown (and selected with the arrows).
    public var listed: [Task] { running + pending + ended }

    public func task(_ id: String) -> Task? { listed.first { $0.id == id } }

    /// Keeps the selection on its task when the lists change; on the first task when that
    /// task is gone (or none was selected).
    public mutating func keepSelection() {
        if let selectedID, listed.contains(where: { $0.id == selectedID }) { return }
        selectedID = listed.first?.id
    }

    public mutating func moveSelection(by step: Int) {
        let ids = listed.map(\.id)
        guard !ids.isEmpty else { return selectedID = nil }
        let index = selectedID.flatMap { ids.firstIndex(of: $0) } ?? 0
        selectedID = ids[max(0, min(ids.count - 1, index + step))]
    }

    /// A key pressed: what changes on the screen, and what the command must do.
    public mutating func handle(_ key: TopKey) -> Action {
        if key == .interrupt || key == .character("q") { return .quit }
        if case .confirmCancel(let id) = footer {
            guard key == .character("y") || key == .character("Y") else {
                footer = .message("\(id) kept")
                return .redraw
            }
            footer = .message("cancelling \(id)…")
            return .cancel(id)
        }
        footer = .keys
        if transcript != nil {
            switch key {
            case .escape, .left, .enter, .backspace: return .unfollow
            case .character("c"): return askCancel(transcript!.taskID)
            default: return .redraw
            }
        }
        switch key {
        case .up, .character("k"): moveSelection(by: -1)
        case .down, .character("j"): moveSelection(by: 1)
        case .pageUp: moveSelection(by: -10)
        case .pageDown: moveSelection(by: 10)
        case .home: moveSelection(by: -listed.count)
        case .end: moveSelection(by: listed.count)
        case .enter: if let selectedID { return .follow(selectedID) }
        case .character("c"): if let selectedID { return askCancel(selectedID) }
        default: break
        }
        return .redraw
    }

    private mutating func askCancel(_ id: String) -> Action {
        if let task = task(id), let status = TaskStatus(rawValue: task.status), status.isTerminal {
            footer = .message("\(id) has already ended (\(task.status))")
        } else {
            footer = .confirmCancel(id)
        }
        return .redraw
    }
}

/// A key of the terminal, decoded from the bytes it sends.
public enum TopKey: Sendable, Equatable {
    case up, down, left, right, pageUp, pageDown, home, end
    case enter, escape, backspace
    /// Ctrl-C (raw mode delivers it as a byte, not as SIGINT).
    case interrupt
    case character(Character)
    case other

    /// The keys in what one read(2) of the terminal returned. A lone ESC at the end is the
    /// Escape key: a terminal sends an escape sequence in one write.
    public static func decode(_ bytes: [UInt8]) -> [TopKey] {
        var keys: [TopKey] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case 0x1B:
                guard index < bytes.count, bytes[index] == UInt8(ascii: "[") || bytes[index] == UInt8(ascii: "O") else {
                    keys.append(.escape)
                    continue
                }
                // CSI or SS3: parameters (digits and ';'), then one final byte.
                index += 1
                var parameters = ""
                while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x3F {
                    parameters.append(Character(Unicode.Scalar(bytes[index])))
                    index += 1
                }
                guard index < bytes.count else {
                    keys.append(.other)
                    continue
                }
                let final = bytes[index]
                index += 1
                switch (final, parameters) {
                case (UInt8(ascii: "A"), _): keys.append(.up)
                case (UInt8(ascii: "B"), _): keys.append(.down)
                case (UInt8(ascii: "C"), _): keys.append(.right)
                case (UInt8(ascii: "D"), _): keys.append(.left)
                case (UInt8(ascii: "H"), _), (UInt8(ascii: "~"), "1"), (UInt8(ascii: "~"), "7"): keys.append(.home)
                case (UInt8(ascii: "F"), _), (UInt8(ascii: "~"), "4"), (UInt8(ascii: "~"), "8"): keys.append(.end)
                case (UInt8(ascii: "~"), "5"): keys.append(.pageUp)
                case (UInt8(ascii: "~"), "6"): keys.append(.pageDown)
                default: keys.append(.other)
                }
            case 0x0D, 0x0A: keys.append(.enter)
            case 0x03: keys.append(.interrupt)
            case 0x7F, 0x08: keys.append(.backspace)
            case 0x20...0x7E: keys.append(.character(Character(Unicode.Scalar(byte))))
            default: keys.append(.other)
            }
        }
        return keys
    }
}

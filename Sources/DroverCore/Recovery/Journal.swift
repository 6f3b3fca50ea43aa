import DroverWire
import Glibc

/// What events.jsonl says of each task, read back after a supervisor stopped.
public struct Journal: Sendable {
    public struct Entry: Sendable {
        public var sessionID: String
        /// The last state recorded.
        public var last: TaskStatus
        public var lastReason: TaskReason?
        /// An attempt's start was recorded after the task was last queued: a worker may have run.
        public var mayHaveStarted: Bool
        public var ends = 0
        public var attempt = 0
        /// Tags of the task's lines (a batch row's identity).
        public var tags = JSONObject()
        /// Where the task first appears, for ordering.
        public var firstLine: Int
    }

    public private(set) var entries: [String: Entry] = [:]
    /// Lines that did not parse (a file from elsewhere, or cut by a full disk long ago).
    public private(set) var unreadableLines = 0

    public init() {}

    /// Reads the folder's events.jsonl, its rotated files first; a missing file is an empty journal.
    public init(folder: SafeFolder) {
        guard let bytes = LogRotation.readAll("events.jsonl", in: folder) else { return }
        bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            var start = 0
            var number = 0
            while start < buffer.count {
                let newline = memchr(base + start, 0x0A, buffer.count - start)
                let end = newline.map { UnsafePointer<UInt8>($0.assumingMemoryBound(to: UInt8.self)) - base } ?? buffer.count
                number += 1
                let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
                if !line.isEmpty {
                    let object = (try? JSONParser.parse(buffer: line))?.objectValue
                    if let object, let event = TaskEvent(json: object) {
                        add(event, line: number)
                    } else if let object, PoolEvent(json: object) != nil {
                        // A pool's line: nothing to recover from it.
                    } else {
                        unreadableLines += 1
                    }
                }
                start = end + 1
            }
        }
    }

    public mutating func add(_ event: TaskEvent, line: Int = 0) {
        var entry = entries[event.taskID] ?? Entry(sessionID: event.sessionID, last: event.status, mayHaveStarted: false, firstLine: line)
        entry.last = event.status
        entry.lastReason = event.reason
        switch event.status {
        case .pending: entry.mayHaveStarted = false
        case .running: entry.mayHaveStarted = true
        case .completed, .error, .cancelled: entry.ends += 1
        }
        if let attempt = event.attempt { entry.attempt = max(entry.attempt, attempt) }
        for (key, value) in event.tags.members { entry.tags[key] = value }
        entries[event.taskID] = entry
    }
}

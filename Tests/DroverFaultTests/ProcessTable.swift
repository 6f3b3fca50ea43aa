import DroverCore
import Glibc

/// A snapshot of /proc: enough to find every process a task left behind, wherever it went.
struct ProcessTable {
    struct Entry {
        let pid: Int32
        let ppid: Int32
        let pgrp: Int32
        let state: Character
        let name: String
        var isZombie: Bool { state == "Z" || state == "X" }
    }

    let entries: [Int32: Entry]

    init() {
        var entries: [Int32: Entry] = [:]
        for name in FileSystem.list("/proc") {
            guard let pid = Int32(name), let entry = Self.read(pid) else { continue }
            entries[pid] = entry
        }
        self.entries = entries
    }

    static func read(_ pid: Int32) -> Entry? {
        guard let bytes = try? FileSystem.read("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 3, let state = fields[0].first, let ppid = Int32(fields[1]), let pgrp = Int32(fields[2]) else { return nil }
        return Entry(pid: pid, ppid: ppid, pgrp: pgrp, state: state, name: String(text[text.index(after: open)..<close]))
    }

    /// Children of `pid` (zombies included).
    func children(of pid: Int32) -> [Entry] {
        entries.values.filter { $0.ppid == pid }
    }

    /// Live processes whose environment names one of these tasks (`DROVER_TASK_ID`): what a
    /// task started, even a descendant that left its group and session. Zombies have no
    /// environment left to read; `children(of:)` finds those.
    func liveProcesses(ofTasks ids: Set<String>) -> [(Entry, String)] {
        var found: [(Entry, String)] = []
        for entry in entries.values where !entry.isZombie {
            guard let bytes = try? FileSystem.read("/proc/\(entry.pid)/environ") else { continue }
            for variable in bytes.split(separator: 0) {
                let text = String(decoding: variable, as: UTF8.self)
                guard text.hasPrefix("DROVER_TASK_ID=") else { continue }
                let id = String(text.dropFirst("DROVER_TASK_ID=".count))
                if ids.contains(id) { found.append((entry, id)) }
            }
        }
        return found
    }
}

import DroverCore
import DroverWire

/// One line of `drover top`'s screen: its text (never wider than the screen) and how the
/// terminal should show it.
public struct ScreenLine: Sendable, Equatable {
    public enum Style: Sendable, Equatable {
        case plain, title, heading, selected, footer
    }

    public var text: String
    public var style: Style

    public init(_ text: String, _ style: Style = .plain) {
        self.text = text
        self.style = style
    }
}

/// `drover top`'s screen as a pure function of what it shows, the time and the terminal's
/// size: exactly `height` lines, none wider than `width` columns.
public enum TopScreen {
    public static func render(_ view: TopView, nowMs: Int64, width: Int, height: Int) -> [ScreenLine] {
        guard width > 0, height > 0 else { return [] }
        var lines = view.transcript.map { transcript(view, $0, width: width, height: height) } ?? list(view, nowMs: nowMs, width: width, height: height)
        lines = lines.map { ScreenLine(clip($0.text, width), $0.style) }
        while lines.count < height - 1 { lines.append(ScreenLine("")) }
        if lines.count >= height { lines.removeLast(lines.count - height + 1) }
        lines.append(ScreenLine(clip(footer(view), width), .footer))
        return lines
    }

    // MARK: the list

    private struct Column {
        let title: String
        let width: Int
    }

    private static let runningColumns = [Column(title: "AGENT", width: 10), Column(title: "MODEL", width: 12), Column(title: "TIME", width: 7),
                                         Column(title: "TRY", width: 3), Column(title: "COST", width: 7), Column(title: "LAST TOOL / MESSAGE", width: 0)]
    private static let pendingColumns = [Column(title: "AGENT", width: 10), Column(title: "WAITING FOR", width: 12),
                                         Column(title: "QUEUED", width: 7), Column(title: "DESCRIPTION", width: 0)]
    private static let endedColumns = [Column(title: "AGENT", width: 10), Column(title: "STATUS", width: 20), Column(title: "TIME", width: 7),
                                       Column(title: "ENDED", width: 10), Column(title: "DESCRIPTION", width: 0)]
    private static let idWidth = 11

    private static func list(_ view: TopView, nowMs: Int64, width: Int, height: Int) -> [ScreenLine] {
        var lines = [ScreenLine(title(view, nowMs: nowMs, width: width), .title)]
        // Pools: as many as leave room for the tasks, the rest counted on the last row.
        lines.append(ScreenLine(row(["POOL", "IN USE", "LIMIT", "WAITING", "COOLDOWN"], widths: [22, 7, 14, 8, 0]), .heading))
        let poolRows = max(1, min(view.pools.count, height / 6))
        for (index, pool) in view.pools.prefix(poolRows).enumerated() {
            let hidden = view.pools.count - poolRows
            let name = index == poolRows - 1 && hidden > 0 ? "+\(hidden + 1) pools" : pool.id
            lines.append(ScreenLine(row(poolCells(pool, name: name, nowMs: nowMs), widths: [22, 7, 14, 8, 0])))
        }
        if view.pools.isEmpty { lines.append(ScreenLine("  (no pool has run a task yet)")) }

        let sections: [(String, [TopView.Task], [Column], (TopView.Task) -> [String])] = [
            ("RUNNING", view.running, runningColumns, { runningCells($0, nowMs: nowMs) }),
            ("PENDING", view.pending, pendingColumns, { pendingCells($0, nowMs: nowMs) }),
            ("ENDED", view.ended, endedColumns, { endedCells($0, nowMs: nowMs) }),
        ]
        // Rows for tasks: what is left once the headings and the footer have theirs, shared
        // out one at a time so a long list does not push the others off the screen.
        var room = max(0, height - lines.count - sections.count - 1)
        var rows = [Int](repeating: 0, count: sections.count)
        while room > 0 {
            var gave = false
            for index in sections.indices where room > 0 && rows[index] < sections[index].1.count {
                rows[index] += 1
                room -= 1
                gave = true
            }
            if !gave { break }
        }
        for (index, (name, tasks, columns, cells)) in sections.enumerated() {
            let widths = [idWidth] + columns.map(\.width)
            lines.append(ScreenLine(row(["\(name) \(tasks.count)"] + columns.map(\.title), widths: widths), .heading))
            for task in window(tasks, rows: rows[index], selected: view.selectedID) {
                let selected = task.id == view.selectedID
                lines.append(ScreenLine(row([task.id] + cells(task), widths: widths, marker: selected ? ">" : " "), selected ? .selected : .plain))
            }
        }
        return lines
    }

    /// The `rows` tasks to show: from the first, or moved on just enough to show the selected one.
    private static func window(_ tasks: [TopView.Task], rows: Int, selected: String?) -> ArraySlice<TopView.Task> {
        guard rows > 0 else { return [] }
        let index = selected.flatMap { id in tasks.firstIndex { $0.id == id } } ?? 0
        let start = index >= rows ? index - rows + 1 : 0
        return tasks[start..<min(tasks.count, start + rows)]
    }

    private static func title(_ view: TopView, nowMs: Int64, width: Int) -> String {
        let left = "drover top · daemon pid \(view.daemonPid) · \(view.running.count) running · \(view.pending.count) pending · \(view.knownTasks) tasks"
        let clock = String(Clock.rfc3339(ms: nowMs).dropFirst(11).prefix(8)) + " UTC"
        let gap = width - displayWidth(left) - displayWidth(clock)
        return gap >= 1 ? left + String(repeating: " ", count: gap) + clock : left
    }

    private static func poolCells(_ pool: StatsReply.Pool, name: String, nowMs: Int64) -> [String] {
        let unlimited = pool.limit == 0
        let limit = unlimited ? "unlimited" : pool.effectiveLimit != pool.limit ? "\(pool.effectiveLimit) (of \(pool.limit))" : String(pool.limit)
        let cooldown = pool.cooldownUntilMs.map { $0 > nowMs ? DurationText.format(milliseconds: Int($0 - nowMs)) + " left" : "ending" } ?? "-"
        return [name, unlimited ? String(pool.running) : "\(pool.running)/\(pool.effectiveLimit)", limit, String(pool.waiting), cooldown]
    }

    private static func runningCells(_ task: TopView.Task, nowMs: Int64) -> [String] {
        let time = task.startedMs.map { DurationText.format(milliseconds: Int(max(0, nowMs - $0))) } ?? "-"
        var last = task.lastTool.map { "[\($0)] " } ?? ""
        last += task.lastMessage ?? ""
        let status = task.waitingFor.map { "(waiting for \($0)) " } ?? ""
        return [task.agent, task.model ?? "-", time, task.attempt > 0 ? String(task.attempt) : "-",
                task.costUsd.flatMap { $0 > 0 ? "$" + Budgets.money($0) : nil } ?? "-", status + (last.isEmpty ? "-" : last)]
    }

    private static func pendingCells(_ task: TopView.Task, nowMs: Int64) -> [String] {
        let queued = task.createdMs.map { DurationText.format(milliseconds: Int(max(0, nowMs - $0))) } ?? "-"
        var waiting = task.waitingFor ?? "-"
        if task.reason == "retry" { waiting = "retry" }
        return [task.agent, waiting, queued, task.description]
    }

    private static func endedCells(_ task: TopView.Task, nowMs: Int64) -> [String] {
        let status = task.reason.map { task.status == "completed" ? task.status : "\(task.status) (\($0))" } ?? task.status
        let ago = task.endedMs.map { DurationText.format(milliseconds: Int(max(0, nowMs - $0))) + " ago" } ?? "-"
        return [task.agent, status, task.durationMs.map { DurationText.format(milliseconds: $0) } ?? "-", ago, task.description]
    }

    /// Cells in columns of these widths, one space apart, after a selection marker; the
    /// last column (width 0) takes what is left.
    private static func row(_ cells: [String], widths: [Int], marker: String = " ") -> String {
        var text = marker + " "
        for (index, cell) in cells.enumerated() {
            let width = index < widths.count ? widths[index] : 0
            text += width == 0 ? sanitized(cell) : fit(cell, width) + " "
        }
        return text
    }

    // MARK: the transcript

    private static func transcript(_ view: TopView, _ transcript: TopView.Transcript, width: Int, height: Int) -> [ScreenLine] {
        let task = view.task(transcript.taskID)
        let about = [transcript.taskID, task?.agent, task.map { TaskText.status(["status": .string($0.status), "reason": JSONValue($0.reason)]) }]
            .compactMap { $0 }.joined(separator: " · ")
        var lines = [ScreenLine("transcript of \(about)", .title)]
        let shown = transcript.lines.suffix(max(0, height - 2))
        lines += shown.map { ScreenLine($0) }
        if transcript.lines.isEmpty { lines.append(ScreenLine(transcript.ended ? "(no transcript lines)" : "(no lines yet)")) }
        return lines
    }

    private static func footer(_ view: TopView) -> String {
        switch view.footer {
        case .confirmCancel(let id):
            let task = view.task(id)
            return "Cancel \(id)\(task.map { " (\($0.agent), \($0.status))" } ?? "")? y: cancel it, any other key: keep it"
        case .message(let text):
            return text
        case .keys:
            if let transcript = view.transcript {
                return (transcript.ended ? "the task has ended" : "following new lines") + " · Esc back · c cancel · q quit"
            }
            return "↑↓ select · Enter follow the transcript · c cancel · q quit"
        }
    }

    // MARK: widths

    /// Columns a character takes on a terminal: 2 for East Asian wide and emoji, else 1.
    static func columns(_ character: Character) -> Int {
        guard let scalar = character.unicodeScalars.first else { return 0 }
        switch scalar.value {
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
             0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
             0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD:
            return 2
        default:
            return 1
        }
    }

    public static func displayWidth(_ text: String) -> Int {
        text.reduce(0) { $0 + columns($1) }
    }

    /// Control characters (an escape in a task's message, say) become spaces: they would
    /// move the cursor or restyle the terminal.
    static func sanitized(_ text: String) -> String {
        String(text.map { character -> Character in
            guard let scalar = character.unicodeScalars.first else { return character }
            return scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) ? " " : character
        })
    }

    /// The text in at most `width` columns, cut with "…" when longer.
    public static func clip(_ text: String, _ width: Int) -> String {
        let clean = sanitized(text)
        guard displayWidth(clean) > width else { return clean }
        var out = ""
        var used = 0
        for character in clean {
            let w = columns(character)
            if used + w > width - 1 { break }
            out.append(character)
            used += w
        }
        return width >= 1 ? out + "…" : ""
    }

    /// The text in exactly `width` columns: cut, or padded with spaces.
    static func fit(_ text: String, _ width: Int) -> String {
        let clipped = clip(text, width)
        return clipped + String(repeating: " ", count: max(0, width - displayWidth(clipped)))
    }
}

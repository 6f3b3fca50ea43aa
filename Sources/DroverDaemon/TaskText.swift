import DroverCore
import DroverWire

/// Tasks as text for people and models: tables and blocks in the shape of the design
/// drover replaces. Shared by the CLI and the MCP server.
public enum TaskText {
    public static func duration(_ task: JSONObject) -> String {
        if let ms = task["duration_ms"]?.intValue { return DurationText.format(milliseconds: ms) }
        // A running task: how long it has run so far.
        guard task["ended_at"]?.stringValue == nil, let started = task["started_at"]?.stringValue.flatMap(Clock.parseRFC3339) else { return "-" }
        return DurationText.format(milliseconds: Int(max(0, Clock.wallMs() - started)))
    }

    public static func table(_ headers: [String], _ rows: [[String]]) -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], min(cell.count, 48)) }
        }
        func line(_ cells: [String]) -> String {
            var text = "|"
            for (i, cell) in cells.enumerated() {
                let clipped = cell.count > 48 ? String(cell.prefix(47)) + "…" : cell
                text += " " + pad(clipped, widths[i]) + " |"
            }
            return text
        }
        var out = [line(headers), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }

    public static func statusTable(_ tasks: [JSONObject]) -> String {
        table(["Task ID", "Description", "Agent", "Status", "Duration", "Session ID"], tasks.map { task in
            [task["id"]?.stringValue ?? "", oneLine(task["description"]?.stringValue ?? ""), task["agent"]?.stringValue ?? "",
             status(task), duration(task), task["session_id"]?.stringValue ?? ""]
        })
    }

    /// "running", "error (lost)", "pending (waiting for slot)", "running (waiting for cluster)":
    /// why a task ended, or waits.
    public static func status(_ task: JSONObject) -> String {
        let status = task["status"]?.stringValue ?? "?"
        // A running task waits only for a cluster: srun runs, Slurm holds the job.
        if status == "pending" || status == "running", let waitingFor = task["waiting_for"]?.stringValue {
            return "\(status) (waiting for \(waitingFor))"
        }
        guard let reason = task["reason"]?.stringValue, status != "completed" else { return status }
        return "\(status) (\(reason))"
    }

    public static func oneLine(_ text: String) -> String {
        text.split(separator: "\n").first.map(String.init) ?? ""
    }

    public static func resultBlock(_ task: JSONObject, result: String?) -> String {
        var lines = ["Task Result", "", "Task ID: \(task["id"]?.stringValue ?? "")",
                     "Description: \(oneLine(task["description"]?.stringValue ?? ""))",
                     "Duration: \(duration(task))", "Session ID: \(task["session_id"]?.stringValue ?? "")"]
        let status = task["status"]?.stringValue ?? ""
        if status != "completed" {
            lines.append("Status: \(TaskText.status(task))")
            if let error = task["error"]?.stringValue { lines.append("Error: \(error)") }
        }
        if let usage = usage(task) { lines.append("Usage: \(usage)") }
        if let worktree = worktree(task) { lines.append("Worktree: \(worktree)") }
        lines += ["", "---", "", result ?? ""]
        return lines.joined(separator: "\n")
    }

    public static func detail(_ task: JSONObject) -> String {
        var lines: [String] = []
        for key in ["id", "session_id", "agent", "provider", "model", "description", "status", "waiting_for", "attempt", "reason", "error",
                    "created_at", "started_at", "ended_at", "duration_ms", "pid", "exit_code", "signal", "result_path"] {
            guard let value = task[key], !value.isNull else { continue }
            lines.append("\(pad(key + ":", 13)) \(value.stringValue ?? JSONWriter.string(value))")
        }
        if let progress = task["progress"]?.objectValue {
            lines.append("\(pad("progress:", 13)) \(progress["messages"]?.intValue ?? 0) messages, \(progress["tool_calls"]?.intValue ?? 0) tool calls"
                + (progress["last_tool"]?.stringValue.map { ", last tool \($0)" } ?? ""))
        }
        if let usage = self.usage(task) { lines.append("\(pad("usage:", 13)) \(usage)") }
        if let worktree = self.worktree(task) { lines.append("\(pad("worktree:", 13)) \(worktree)") }
        if let sandbox = task["sandbox"]?.objectValue {
            let writable = sandbox["writable"]?.arrayValue?.compactMap(\.stringValue) ?? []
            lines.append("\(pad("sandbox:", 13)) filesystem \(sandbox["filesystem"]?.stringValue ?? "?"), network \(sandbox["network"]?.stringValue ?? "?")"
                + (writable.isEmpty ? "" : ", writable \(writable.joined(separator: " "))"))
        }
        if let slurm = task["slurm"]?.objectValue {
            lines.append("\(pad("slurm:", 13)) job \(slurm["job_id"]?.stringValue ?? "?") \(slurm["state"]?.stringValue ?? "?")")
        }
        if let prompt = task["prompt"]?.stringValue { lines += ["", "Prompt:", prompt] }
        return lines.joined(separator: "\n")
    }

    /// "$0.0123, 1200 input and 340 output tokens", or nil when the task spent nothing.
    public static func usage(_ task: JSONObject) -> String? {
        guard let object = task["usage"]?.objectValue else { return nil }
        let usage = TaskUsage(json: object)
        guard !usage.isZero else { return nil }
        var text = "$\(Budgets.money(usage.costUsd)), \(usage.inputTokens) input and \(usage.outputTokens) output tokens"
        if usage.cacheReadTokens + usage.cacheWriteTokens > 0 { text += " (\(usage.cacheReadTokens) read from the cache, \(usage.cacheWriteTokens) written to it)" }
        if let attempts = task["attempts"]?.arrayValue, attempts.count > 1 { text += ", over \(attempts.count) attempts" }
        return text
    }

    /// A worktree task's branch and what it changed: "drover/bg_x: 2 files changed, +10 -1",
    /// or "branch drover/bg_x (running in PATH)" before it has ended; nil for another task.
    public static func worktree(_ task: JSONObject) -> String? {
        guard let record = task["worktree"]?.objectValue, let branch = record["branch"]?.stringValue else { return nil }
        let path = record["path"]?.stringValue
        let ended = (task["status"]?.stringValue).flatMap(TaskStatus.init(rawValue:))?.isTerminal ?? false
        var text: String
        if !ended || record["head"]?.stringValue == nil {
            text = "branch \(branch)" + (path.map { ended ? " (worktree at \($0))" : " (running in \($0))" } ?? "")
        } else {
            let files = record["files_changed"]?.intValue ?? 0
            text = "\(branch): " + (files == 1 ? "1 file changed" : "\(files) files changed")
                + ", +\(record["insertions"]?.intValue ?? 0) -\(record["deletions"]?.intValue ?? 0)"
            if let path { text += " (worktree kept at \(path))" }
        }
        if record["discarded_at"]?.stringValue != nil { text += " (discarded)" }
        if let error = record["error"]?.stringValue { text += "; error: \(oneLine(error))" }
        return text
    }

    /// A transcript line as readable text.
    public static func transcriptLine(_ line: Substring) -> String {
        guard let object = try? JSONParser.parse(Array(line.utf8)).value.objectValue else { return String(line) }
        let time = object["t"]?.intValue.map { Clock.rfc3339(ms: Int64($0)).dropFirst(11).prefix(12) } ?? ""
        let arrow = object["dir"]?.stringValue == "out" ? "→" : "←"
        let type = object["type"]?.stringValue ?? "?"
        var text: String
        switch type {
        case "start": text = "start: " + oneLine(object["prompt"]?.stringValue ?? "")
        case "message": text = "\(object["role"]?.stringValue ?? "assistant"): \(object["text"]?.stringValue ?? "")"
        case "progress":
            text = "tool \(object["tool"]?.stringValue ?? "?")"
            if let input = object["input"] { text += " " + JSONWriter.string(input) }
        case "result": text = "result: \(object["text"]?.stringValue ?? "")"
        case "error": text = "error: \(object["message"]?.stringValue ?? "")"
        case "prompt": text = "prompt: \(object["text"]?.stringValue ?? "")"
        case "cancel": text = "cancel (\(object["reason"]?.stringValue ?? ""))"
        case "log": text = "log \(object["level"]?.stringValue ?? ""): \(object["text"]?.stringValue ?? "")"
        default:
            var rest = object
            for key in ["t", "dir", "type"] { rest[key] = nil }
            text = type + (rest.isEmpty ? "" : " " + JSONWriter.string(.object(rest)))
        }
        return "\(time) \(arrow) \(text)"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// "Cancelled N background task(s):", their table, how to continue each session
    /// (`continueHint` phrases that for the reader: a shell command or a tool call), and
    /// the tasks named that had already ended.
    public static func cancelReport(_ answer: CancelReply, continueHint: (String) -> String) -> String {
        let cancelled = Set(answer.cancelled)
        let rows = answer.tasks.filter { cancelled.contains($0.id) }
        var lines = ["Cancelled \(rows.count) background task(s):"]
        if !rows.isEmpty {
            lines.append("")
            lines.append(table(["Task ID", "Description", "Status", "Session ID"], rows.map { task in
                [task.id, oneLine(task.json["description"]?.stringValue ?? ""), status(task.json), task.sessionID]
            }))
            lines += ["", "Continuable sessions:"]
            for session in Set(rows.map(\.sessionID)).sorted() {
                lines.append("  " + continueHint(session))
            }
        }
        let ended = Set(answer.alreadyEnded)
        let endedRows = answer.tasks.filter { ended.contains($0.id) }
        if !endedRows.isEmpty {
            lines += ["", "Already ended: " + endedRows.map { "\($0.id) (\(status($0.json)))" }.joined(separator: ", ")]
        }
        return lines.joined(separator: "\n")
    }
}

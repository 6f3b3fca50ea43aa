import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// Options of every command that talks to the daemon.
struct ClientOptions: ParsableArguments {
    @OptionGroup var common: CommonOptions

    @Flag(name: .customLong("no-autostart"), help: "Fail (exit 5) instead of starting a daemon when none answers.")
    var noAutostart = false

    var state: StateFolder { StateFolder(explicit: common.stateDirectory, environment: ProcessEnvironment.current()) }

    /// Connects, starting the daemon unless told not to; exit 5 when that fails.
    func connect() throws -> ControlClient {
        do {
            var serve: [String] = []
            if let config = common.configFile { serve += ["--config", FileSystem.absolute(config)] }
            return try ControlClient.connect(state: state, autostart: !noAutostart, serveArguments: serve)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
    }

    /// One request, one answer; an error answer becomes its exit status.
    func call(_ request: JSONObject) throws -> JSONObject {
        let client = try connect()
        do {
            return try client.call(request)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}

extension ClientOptions {
    /// Sends one request and hands every answer frame to `handle` until it says the answer
    /// is complete. An error answer, or a lost daemon, becomes its exit status; so does the
    /// daemon closing early when `closingIsError`.
    func stream(_ request: JSONObject, closingIsError: Bool = false, onFailure: () -> Void = {},
                _ handle: (JSONObject) throws -> Bool) throws {
        let connection = try connect()
        do {
            try connection.send(request)
            while let frame = try connection.next() {
                try ControlClient.check(frame)
                if try handle(frame) { return }
            }
            if closingIsError { throw ClientError(message: "the daemon closed the connection", exitCode: 5) }
        } catch let error as ClientError {
            onFailure()
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}

/// Parses a duration flag or fails with a usage error naming the flag.
func parseDuration(_ text: String?, flag: String) throws -> Int? {
    guard let text else { return nil }
    guard let ms = DurationText.milliseconds(text) else {
        throw ValidationError("\(flag): \"\(text)\" is not a duration (milliseconds, or such as 1500ms, 90s, 30m, 2h)")
    }
    return ms
}

/// The exit status SPEC section 7 gives a set of ended tasks.
func exitStatus(for statuses: [String]) -> Int32 {
    if statuses.contains("error") { return 1 }
    if statuses.contains("cancelled") { return 4 }
    if statuses.contains(where: { $0 != "completed" }) { return 3 }
    return 0
}

/// Tables and blocks in the shape of the design drover replaces.
enum Render {
    static func duration(_ task: JSONObject) -> String {
        guard let ms = task["duration_ms"]?.intValue else { return "-" }
        return DurationText.format(milliseconds: ms)
    }

    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], min(cell.count, 48)) }
        }
        func line(_ cells: [String]) -> String {
            var text = "|"
            for (i, cell) in cells.enumerated() {
                let clipped = cell.count > 48 ? String(cell.prefix(47)) + "…" : cell
                text += " " + Terminal.pad(clipped, widths[i]) + " |"
            }
            return text
        }
        var out = [line(headers), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }

    static func statusTable(_ tasks: [JSONObject]) -> String {
        table(["Task ID", "Description", "Agent", "Status", "Duration", "Session ID"], tasks.map { task in
            [task["id"]?.stringValue ?? "", oneLine(task["description"]?.stringValue ?? ""), task["agent"]?.stringValue ?? "",
             status(task), duration(task), task["session_id"]?.stringValue ?? ""]
        })
    }

    static func status(_ task: JSONObject) -> String {
        let status = task["status"]?.stringValue ?? "?"
        guard let reason = task["reason"]?.stringValue, status != "completed" else { return status }
        return "\(status) (\(reason))"
    }

    static func oneLine(_ text: String) -> String {
        text.split(separator: "\n").first.map(String.init) ?? ""
    }

    static func resultBlock(_ task: JSONObject, result: String?) -> String {
        var lines = ["Task Result", "", "Task ID: \(task["id"]?.stringValue ?? "")",
                     "Description: \(oneLine(task["description"]?.stringValue ?? ""))",
                     "Duration: \(duration(task))", "Session ID: \(task["session_id"]?.stringValue ?? "")"]
        let status = task["status"]?.stringValue ?? ""
        if status != "completed" {
            lines.append("Status: \(Render.status(task))")
            if let error = task["error"]?.stringValue { lines.append("Error: \(error)") }
        }
        lines += ["", "---", "", result ?? ""]
        return lines.joined(separator: "\n")
    }

    static func detail(_ task: JSONObject) -> String {
        var lines: [String] = []
        for key in ["id", "session_id", "agent", "provider", "model", "description", "status", "reason", "error",
                    "created_at", "started_at", "ended_at", "duration_ms", "pid", "exit_code", "signal", "result_path"] {
            guard let value = task[key], !value.isNull else { continue }
            lines.append("\(Terminal.pad(key + ":", 13)) \(value.stringValue ?? JSONWriter.string(value))")
        }
        if let progress = task["progress"]?.objectValue {
            lines.append("\(Terminal.pad("progress:", 13)) \(progress["messages"]?.intValue ?? 0) messages, \(progress["tool_calls"]?.intValue ?? 0) tool calls"
                + (progress["last_tool"]?.stringValue.map { ", last tool \($0)" } ?? ""))
        }
        if let prompt = task["prompt"]?.stringValue { lines += ["", "Prompt:", prompt] }
        return lines.joined(separator: "\n")
    }

    /// A transcript line as readable text.
    static func transcriptLine(_ line: Substring) -> String {
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
}

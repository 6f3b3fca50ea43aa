import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Drives `drover mcp` as an MCP client would: JSON-RPC 2.0, one message per line, over
/// the real process's stdin and stdout. Notifications that arrive while waiting for an
/// answer are kept for `notification(...)`.
final class MCPClient {
    let process: PipedProcess
    private var nextID = 1
    private(set) var notifications: [JSONObject] = []

    init(_ fixture: DaemonFixture) throws {
        process = try PipedProcess([droverExecutable, "mcp", "--state-dir", fixture.state, "--config", fixture.config],
                                   stderr: fixture.folder + "/mcp.err")
    }

    /// initialize, then the initialized notification; returns the server's answer.
    func initialize() throws -> JSONObject {
        let answer = try request("initialize", [
            "protocolVersion": "2025-06-18", "capabilities": [:],
            "clientInfo": ["name": "drover-tests", "version": "1"],
        ])
        try send(["jsonrpc": "2.0", "method": "notifications/initialized"])
        return answer
    }

    func request(_ method: String, _ params: JSONObject, timeoutMs: Int = 10_000) throws -> JSONObject {
        let id = nextID
        nextID += 1
        try send(["jsonrpc": "2.0", "id": .number(Double(id)), "method": .string(method), "params": .object(params)])
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        while true {
            let left = Int(deadline - Clock.wallMs())
            guard left > 0, let line = process.readLine(timeoutMs: left) else {
                throw TestFailure("no answer to \(method) within \(timeoutMs) ms")
            }
            let message = try parseObject(line)
            if message["id"]?.intValue == id {
                if let error = message["error"] { throw TestFailure("\(method) failed: \(JSONWriter.string(error))") }
                return message["result"]?.objectValue ?? [:]
            }
            if message["id"] == nil { notifications.append(message) }
        }
    }

    /// A tools/call: the text of its answer and whether it is a tool error.
    func call(_ tool: String, _ arguments: JSONObject, timeoutMs: Int = 10_000) throws -> (text: String, isError: Bool) {
        let result = try request("tools/call", ["name": .string(tool), "arguments": .object(arguments)], timeoutMs: timeoutMs)
        let text = result["content"]?.arrayValue?.compactMap { $0.objectValue?["text"]?.stringValue }.joined(separator: "\n") ?? ""
        return (text, result["isError"]?.boolValue ?? false)
    }

    /// The notifications/message about a task, waiting up to `timeoutMs` for it.
    func notification(about taskID: String, timeoutMs: Int = 10_000) throws -> JSONObject? {
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        while true {
            if let found = notifications.first(where: { $0["params"]?.objectValue?["data"]?.objectValue?["task_id"]?.stringValue == taskID }) {
                return found["params"]?.objectValue
            }
            let left = Int(deadline - Clock.wallMs())
            guard left > 0, let line = process.readLine(timeoutMs: left) else { return nil }
            let message = try parseObject(line)
            if message["id"] == nil { notifications.append(message) }
        }
    }

    func send(_ message: JSONObject) throws {
        try process.writeLine(JSONWriter.string(.object(message)))
    }

    /// Closes stdin, as a client that is done does; returns the exit status.
    func finish() -> Int32? {
        process.closeInput()
        return process.waitForExit(timeoutMs: 15_000)
    }
}

/// The ends reported at the start of a tool's answer: task id to its line.
func reportedEnds(in text: String) -> [String: String] {
    guard text.hasPrefix("Background tasks that ended since drover's previous answer:\n") else { return [:] }
    var ends: [String: String] = [:]
    for line in text.split(separator: "\n").dropFirst() {
        guard line.hasPrefix("- bg_") else { break }
        ends[String(line.dropFirst(2).prefix(11))] = String(line)
    }
    return ends
}

/// A tool's answer without the ends reported before it.
func answerBody(_ text: String) -> String {
    guard let range = text.firstRange(of: "\n\n---\n\n"), !reportedEnds(in: text).isEmpty else { return text }
    return String(text[range.upperBound...])
}

/// "Task ID: bg_..." and the like from a tool's answer.
func field(_ name: String, in text: String) -> String? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + ": ") {
        return String(line.dropFirst(name.count + 2))
    }
    return nil
}

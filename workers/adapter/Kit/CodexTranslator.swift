import DroverWire

/// Codex's `codex exec --json` stream (the ThreadEvent lines of codex-rs/exec, as typed by
/// the Codex TypeScript SDK): `thread.started` (`thread_id`, the id `codex exec resume`
/// takes), `turn.started`, `item.started` / `item.updated` / `item.completed` (items of type
/// `agent_message`, `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`,
/// `web_search`, `todo_list`, `error`), `turn.completed` (`usage`), `turn.failed`
/// (`error.message`), and `error` (a stream error; Codex may still recover, so it decides
/// nothing by itself). Codex reports tokens but no cost.
///
/// Usage: `turn.completed`'s `usage` (`input_tokens`, which counts the cached ones too, as
/// OpenAI does; `cached_input_tokens`; `output_tokens`). A rate limit: an `error` or
/// `turn.failed` whose message speaks of one (429, "rate limit", "usage limit", ...) becomes a
/// `rate_limit` frame, once per message (Codex repeats its last error in `turn.failed`).
public struct CodexTranslator: StreamTranslator {
    public let cliName = "codex"
    private var session = SessionTracker(cli: "codex")
    private var lastText: String?
    private var lastError: String?
    private var usage: JSONValue?
    /// The message of the last rate limit reported, so that a repeat is not reported again.
    private var reportedLimit: String?
    /// Tool items already reported: an item is started, updated and completed, but is one call.
    private var reportedItems: Set<String> = []
    public private(set) var verdict: TurnVerdict?
    public private(set) var runUsage: UsageTotals?

    public init() {}

    public var cliSessionID: String? { session.id }

    public mutating func translate(_ line: JSONObject, nowMs: Int64) -> [JSONObject] {
        var frames: [JSONObject] = []
        switch line["type"]?.stringValue {
        case "thread.started":
            if let frame = session.saw(line["thread_id"]) { frames.append(frame) }
        case "item.started", "item.updated", "item.completed":
            guard let item = line["item"]?.objectValue else { break }
            let completed = line["type"]?.stringValue == "item.completed"
            frames += translate(item: item, completed: completed)
        case "turn.completed":
            usage = addingUsage(usage, line["usage"])
            if let turn = line["usage"]?.objectValue {
                func count(_ key: String) -> Int { max(0, turn[key]?.integer ?? 0) }
                let cached = min(count("cached_input_tokens"), count("input_tokens"))
                runUsage = (runUsage ?? UsageTotals()) + UsageTotals(
                    inputTokens: count("input_tokens") - cached, outputTokens: count("output_tokens"), cacheReadTokens: cached)
            }
            var data: JSONObject = ["cli": "codex"]
            data["cli_session_id"] = JSONValue(session.id)
            if let usage { data["usage"] = usage }
            verdict = .succeeded(text: lastText ?? "", data: data)
        case "turn.failed":
            let message = line["error"]?.objectValue?["message"]?.stringValue ?? lastError ?? "no detail given"
            verdict = .failed(message: "codex failed: \(shortened(message, to: 1000))", retryable: RetryClassifier.isRetryable(text: message))
            frames += rateLimit(message)
        case "error":
            let message = line["message"]?.stringValue ?? "unknown error"
            lastError = message
            frames.append(Frames.log("codex: \(message)"))
            frames += rateLimit(message)
        default:
            break
        }
        return frames
    }

    private mutating func translate(item: JSONObject, completed: Bool) -> [JSONObject] {
        let id = item["id"]?.stringValue ?? ""
        switch item["type"]?.stringValue {
        case "agent_message":
            guard completed, let text = item["text"]?.stringValue, !text.isEmpty else { return [] }
            lastText = text
            return [Frames.message(text)]
        case "command_execution":
            guard firstSight(id) else { return [] }
            let command = item["command"]?.stringValue ?? ""
            return [Frames.progress(tool: "shell", input: ["command": .string(command)], text: shortened(command, to: 200))]
        case "file_change":
            guard firstSight(id) else { return [] }
            let changes = item["changes"] ?? .array([])
            let paths = (changes.arrayValue ?? []).compactMap { $0.objectValue?["path"]?.stringValue }
            return [Frames.progress(tool: "apply_patch", input: ["changes": changes], text: shortened("apply_patch " + paths.joined(separator: " "), to: 200))]
        case "mcp_tool_call":
            guard firstSight(id) else { return [] }
            let name = "\(item["server"]?.stringValue ?? "mcp").\(item["tool"]?.stringValue ?? "tool")"
            return [Frames.progress(tool: name, input: item["arguments"] ?? .null, text: name)]
        case "web_search":
            guard firstSight(id) else { return [] }
            let query = item["query"]?.stringValue ?? ""
            return [Frames.progress(tool: "web_search", input: ["query": .string(query)], text: shortened("web_search " + query, to: 200))]
        case "todo_list":
            let items = item["items"]?.arrayValue ?? []
            let open = items.filter { $0.objectValue?["completed"]?.boolValue != true }.count
            return [Frames.todo(open: open, total: items.count)]
        case "error":
            guard completed else { return [] }
            return [Frames.log("codex: \(item["message"]?.stringValue ?? "error")")]
        default:
            return []  // reasoning summaries and plans stay private to the CLI
        }
    }

    private mutating func rateLimit(_ message: String) -> [JSONObject] {
        guard RetryClassifier.isRateLimit(text: message), message != reportedLimit else { return [] }
        reportedLimit = message
        return [Frames.rateLimit(retryAfterMs: nil, message: "codex: \(message)")]
    }

    private mutating func firstSight(_ id: String) -> Bool {
        guard !id.isEmpty else { return true }
        return reportedItems.insert(id).inserted
    }

    /// A stream that ends without `turn.completed` has no answer; a stream error seen on the
    /// way is the best explanation there is.
    public func verdictAtCleanExit() -> TurnVerdict? {
        guard let lastError else { return nil }
        return .failed(message: "codex failed: \(shortened(lastError, to: 1000))", retryable: RetryClassifier.isRetryable(text: lastError))
    }
}

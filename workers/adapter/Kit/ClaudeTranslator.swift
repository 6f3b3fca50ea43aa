import DroverWire

/// Claude Code's `claude -p --output-format stream-json --verbose` stream (Claude Code 2.x,
/// the message shapes of the Agent SDK): `system` (subtype `init` names the session;
/// `api_retry` while it retries the API), `assistant` (a model message whose `content`
/// holds `text`, `thinking` and `tool_use` blocks, with an `error` such as `rate_limit` when
/// the API failed), `user` (tool results), `rate_limit_event`, and one closing `result`
/// (`subtype` `success` or `error_*`, `is_error`, `result` text, `total_cost_usd`, `usage`,
/// `api_error_status`).
public struct ClaudeTranslator: StreamTranslator {
    public let cliName = "claude"
    private var session = SessionTracker(cli: "claude")
    private var lastText: String?
    /// The `error` of the last assistant message (`rate_limit`, `server_error`, ...).
    private var assistantError: String?
    public private(set) var verdict: TurnVerdict?

    public init() {}

    public var cliSessionID: String? { session.id }

    public mutating func translate(_ line: JSONObject) -> [JSONObject] {
        var frames: [JSONObject] = []
        if let frame = session.saw(line["session_id"]) { frames.append(frame) }
        switch line["type"]?.stringValue {
        case "system":
            if line["subtype"]?.stringValue == "api_retry" {
                let attempt = line["attempt"]?.integer.map(String.init) ?? "?"
                let most = line["max_retries"]?.integer.map(String.init) ?? "?"
                let status = line["error_status"]?.integer.map { " (HTTP \($0))" } ?? ""
                let error = line["error"]?.stringValue ?? "error"
                frames.append(Frames.log("claude is retrying the API, attempt \(attempt) of \(most): \(error)\(status)"))
            }
        case "assistant":
            if let error = line["error"]?.stringValue { assistantError = error }
            for block in line["message"]?.objectValue?["content"]?.arrayValue ?? [] {
                guard let block = block.objectValue else { continue }
                switch block["type"]?.stringValue {
                case "text":
                    let text = block["text"]?.stringValue ?? ""
                    guard !text.isEmpty else { continue }
                    lastText = text
                    frames.append(Frames.message(text))
                case "tool_use", "server_tool_use":
                    let name = block["name"]?.stringValue ?? "tool"
                    let input = block["input"] ?? .object(JSONObject())
                    frames.append(Frames.progress(tool: name, input: input, text: Self.describe(tool: name, input: input)))
                    if name == "TodoWrite", let todos = input.objectValue?["todos"]?.arrayValue {
                        let open = todos.filter { $0.objectValue?["status"]?.stringValue != "completed" }.count
                        frames.append(Frames.todo(open: open, total: todos.count))
                    }
                default:
                    break  // thinking blocks stay private to the CLI
                }
            }
        case "user":
            for block in line["message"]?.objectValue?["content"]?.arrayValue ?? [] {
                guard let block = block.objectValue, block["type"]?.stringValue == "tool_result" else { continue }
                let text = block["content"]?.flattenedText ?? ""
                let failed = block["is_error"]?.boolValue == true
                frames.append(Frames.message(shortened(failed ? "tool error: " + text : text, to: 2000), role: "tool"))
            }
        case "rate_limit_event":
            let info = line["rate_limit_info"]?.objectValue
            if info?["status"]?.stringValue == "rejected" {
                let kind = info?["rateLimitType"]?.stringValue ?? "rate"
                frames.append(Frames.log("claude hit its \(kind) limit"))
            }
        case "result":
            verdict = resultVerdict(line)
        default:
            break
        }
        return frames
    }

    public func verdictAtCleanExit() -> TurnVerdict? { nil }

    private func resultVerdict(_ line: JSONObject) -> TurnVerdict {
        let subtype = line["subtype"]?.stringValue ?? "success"
        let text = line["result"]?.stringValue
        if subtype == "success" && line["is_error"]?.boolValue != true {
            var data: JSONObject = ["cli": "claude"]
            data["cli_session_id"] = JSONValue(session.id)
            if let usage = line["usage"] { data["usage"] = usage }
            if let cost = line["total_cost_usd"] { data["cost_usd"] = cost }
            for key in ["num_turns", "duration_ms", "duration_api_ms"] {
                if let value = line[key] { data[key] = value }
            }
            if let models = line["modelUsage"] { data["model_usage"] = models }
            return .succeeded(text: text ?? lastText ?? "", data: data)
        }
        let errors = (line["errors"]?.arrayValue ?? []).map(\.flattenedText).filter { !$0.isEmpty }
        var detail = text.flatMap { $0.isEmpty ? nil : $0 } ?? errors.joined(separator: "; ")
        if detail.isEmpty { detail = "no detail given" }
        let status = line["api_error_status"]?.integer
        let retryable = RetryClassifier.isRetryable(status: status)
            || ["rate_limit", "server_error"].contains(assistantError ?? "")
            || RetryClassifier.isRetryable(text: detail)
        // A failed API call ends with subtype "success" and is_error: the subtype says nothing then.
        let labels = (subtype == "success" ? [] : [subtype]) + (status.map { ["HTTP \($0)"] } ?? [])
        let label = labels.isEmpty ? "" : " (\(labels.joined(separator: ", ")))"
        return .failed(message: "claude failed\(label): \(shortened(detail, to: 1000))", retryable: retryable)
    }

    /// A one-line summary of a tool call for `progress.text`.
    static func describe(tool: String, input: JSONValue) -> String {
        let object = input.objectValue
        for key in ["command", "file_path", "path", "pattern", "url", "query", "description"] {
            if let value = object?[key]?.stringValue { return shortened("\(tool) \(value)", to: 200) }
        }
        return tool
    }
}

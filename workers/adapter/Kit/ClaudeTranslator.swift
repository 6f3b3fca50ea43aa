import DroverWire

/// Claude Code's `claude -p --output-format stream-json --verbose` stream (Claude Code 2.x,
/// the message shapes of the Agent SDK): `system` (subtype `init` names the session;
/// `api_retry` while it retries the API), `assistant` (a model message whose `content`
/// holds `text`, `thinking` and `tool_use` blocks, with an `error` such as `rate_limit` when
/// the API failed), `user` (tool results), `rate_limit_event`, and one closing `result`
/// (`subtype` `success` or `error_*`, `is_error`, `result` text, `total_cost_usd`, `usage`,
/// `api_error_status`).
///
/// Rate limits: an `api_retry` after HTTP 429 or 529 (the CLI retries by itself, after
/// `retry_delay_ms`), a `rate_limit_event` whose status says rejected or limited (a
/// subscription's limit, until `resetsAt`), and a failed result with `api_error_status` 429 or
/// 529 each become a `rate_limit` frame. Usage: the result's `usage` (this run's tokens) and
/// `total_cost_usd`, which Claude Code keeps as a running total of the whole conversation
/// across `--resume` runs: this run's cost is that total less `costBefore`, the total when the
/// run began (0 for a new conversation; nil when unknown, and then no cost is claimed).
///
/// The CLI's own API-error text (an assistant message from model `<synthetic>`, marked
/// `is_api_error_message`) is a log line, not an answer. After a Bash call with
/// `run_in_background` the CLI prints its `result` and stays: `system` lines
/// (`background_tasks_changed`, `task_started`, `task_notification`) say what runs, and when a
/// background task ends the CLI runs another model turn and prints another `result`. Each
/// result is one answer of the run: usage adds up over them, the cost is the last running
/// total, and the verdict is the last one; while background tasks run or a notification's turn
/// is due, `awaitsMoreAnswers` keeps the adapter from stopping the CLI.
public struct ClaudeTranslator: StreamTranslator {
    public let cliName = "claude"
    private var session = SessionTracker(cli: "claude")
    private var lastText: String?
    /// The `error` of the last assistant message (`rate_limit`, `server_error`, ...).
    private var assistantError: String?
    private let costBefore: Double?
    public private(set) var verdict: TurnVerdict?
    public private(set) var runUsage: UsageTotals?
    public private(set) var conversationCostUsd: Double?
    /// Background tasks of the CLI's own that are running (their ids).
    private var backgroundTasks: Set<String> = []
    /// A background task ended since the last result: the CLI owes the turn it announced.
    private var notificationPending = false
    /// This run's results so far, their token counts and their data added up.
    private var results = 0
    private var resultTokens = UsageTotals()
    private var resultData = JSONObject()

    public init(costBefore: Double? = 0) {
        self.costBefore = costBefore
    }

    public var cliSessionID: String? { session.id }

    public var awaitsMoreAnswers: Bool { !backgroundTasks.isEmpty || notificationPending }

    public mutating func translate(_ line: JSONObject, nowMs: Int64) -> [JSONObject] {
        var frames: [JSONObject] = []
        if let frame = session.saw(line["session_id"]) { frames.append(frame) }
        switch line["type"]?.stringValue {
        case "system":
            frames += backgroundWork(line)
            if line["subtype"]?.stringValue == "api_retry" {
                let attempt = line["attempt"]?.integer.map(String.init) ?? "?"
                let most = line["max_retries"]?.integer.map(String.init) ?? "?"
                let statusCode = line["error_status"]?.integer
                let status = statusCode.map { " (HTTP \($0))" } ?? ""
                let error = line["error"]?.stringValue ?? "error"
                let text = "claude is retrying the API, attempt \(attempt) of \(most): \(error)\(status)"
                frames.append(Frames.log(text))
                if RetryClassifier.isRateLimit(status: statusCode) || (statusCode == nil && error == "rate_limit") {
                    frames.append(Frames.rateLimit(retryAfterMs: line["retry_delay_ms"]?.integer, message: text))
                }
            }
        case "assistant":
            if let error = line["error"]?.stringValue { assistantError = error }
            let synthetic = line["is_api_error_message"]?.boolValue == true
                || line["message"]?.objectValue?["model"]?.stringValue == "<synthetic>"
            for block in line["message"]?.objectValue?["content"]?.arrayValue ?? [] {
                guard let block = block.objectValue else { continue }
                switch block["type"]?.stringValue {
                case "text":
                    let text = block["text"]?.stringValue ?? ""
                    guard !text.isEmpty else { continue }
                    if synthetic {
                        // The CLI's own words about a failed API call: no model said them.
                        frames.append(Frames.log("claude: \(shortened(text, to: 1000))"))
                        continue
                    }
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
            let status = info?["status"]?.stringValue?.lowercased() ?? ""
            if status.hasPrefix("reject") || status.contains("limited") {
                let kind = info?["rateLimitType"]?.stringValue ?? "rate"
                var text = "claude hit its \(kind) limit"
                var wait: Int?
                if let resets = info?["resetsAt"]?.numberValue, resets.isFinite, resets > 0 {
                    // Seconds since the epoch (a value that large can only be milliseconds).
                    let resetsMs = resets > 1e11 ? resets : resets * 1000
                    if resetsMs < 9e15 {
                        let ms = max(0, Int(resetsMs) - Int(nowMs))
                        wait = ms
                        text += " (resets in \(Self.describe(ms: ms)))"
                    }
                }
                frames.append(Frames.log(text))
                frames.append(Frames.rateLimit(retryAfterMs: wait, message: text))
            }
        case "result":
            results += 1
            notificationPending = false
            if results > 1 {
                frames.append(Frames.log("claude answered again (answer \(results) of this run, after its background work)", level: "info"))
            }
            addUp(line)
            verdict = resultVerdict(line)
            if let total = line["total_cost_usd"]?.numberValue, total.isFinite, total >= 0 {
                conversationCostUsd = total
                frames.append(["type": "cli_cost", "cli": "claude", "cli_session_id": JSONValue(session.id), "total_cost_usd": .number(total)])
            }
            if case .failed(let message, _)? = verdict, isRateLimitFailure(line) {
                frames.append(Frames.rateLimit(retryAfterMs: nil, message: message))
            }
        default:
            break
        }
        return frames
    }

    public func verdictAtCleanExit() -> TurnVerdict? { nil }

    /// Adds one result's figures to the run's: tokens and turns are per result, the cost a
    /// running total (the run's cost is the last total less where the conversation stood).
    private mutating func addUp(_ line: JSONObject) {
        if let usage = Self.usage(of: line, costBefore: costBefore) {
            var tokens = usage
            tokens.costUsd = nil
            resultTokens = resultTokens + tokens
            var run = resultTokens
            run.costUsd = usage.costUsd
            runUsage = run
        }
        for key in ["usage", "num_turns", "duration_ms"] {
            if let value = line[key] { resultData[key] = addingUsage(resultData[key], value) }
        }
        if let value = line["duration_api_ms"] { resultData["duration_api_ms"] = value }
    }

    /// The CLI's background tasks, from its `system` lines: which run, and when one ends
    /// (its end brings another model turn).
    private mutating func backgroundWork(_ line: JSONObject) -> [JSONObject] {
        switch line["subtype"]?.stringValue {
        case "background_tasks_changed":
            let ids = (line["tasks"]?.arrayValue ?? []).compactMap { $0.objectValue?["task_id"]?.stringValue }
            backgroundTasks = Set(ids)
        case "task_started":
            guard line["is_backgrounded"]?.boolValue == true, let id = line["task_id"]?.stringValue else { break }
            backgroundTasks.insert(id)
            let what = line["description"]?.stringValue ?? id
            return [Frames.log("claude started a background task: \(shortened(what, to: 200)) (\(id))", level: "info")]
        case "task_notification":
            guard let id = line["task_id"]?.stringValue else { break }
            backgroundTasks.remove(id)
            notificationPending = true
            let status = line["status"]?.stringValue ?? "ended"
            let summary = line["summary"]?.stringValue.map { ": " + shortened($0, to: 300) } ?? ""
            return [Frames.log("claude's background task \(id) \(status)\(summary)", level: "info")]
        case "task_updated":
            let status = line["patch"]?.objectValue?["status"]?.stringValue ?? ""
            // Its notification (and the turn it brings) follows: keep waiting across the gap.
            if ["completed", "failed", "killed", "stopped"].contains(status), let id = line["task_id"]?.stringValue,
               backgroundTasks.remove(id) != nil {
                notificationPending = true
            }
        default:
            break
        }
        return []
    }

    /// This run's usage from a `result` line: its `usage` counts this run only, as Anthropic
    /// counts (input without the cache); the cost is the conversation's total less the total
    /// before the run; the model is named when the run used one.
    static func usage(of line: JSONObject, costBefore: Double?) -> UsageTotals? {
        guard let usage = line["usage"]?.objectValue else { return nil }
        func count(_ key: String) -> Int { max(0, usage[key]?.integer ?? 0) }
        var totals = UsageTotals(
            inputTokens: count("input_tokens"), outputTokens: count("output_tokens"),
            cacheReadTokens: count("cache_read_input_tokens"), cacheWriteTokens: count("cache_creation_input_tokens"))
        if let total = line["total_cost_usd"]?.numberValue, total.isFinite, total >= 0, let costBefore {
            // A total below where the conversation stood can only be a new count (a conversation
            // the CLI started afresh): then all of it is this run's.
            totals.costUsd = total >= costBefore ? sum(total, -costBefore) : total
        }
        if let models = line["modelUsage"]?.objectValue, models.count == 1 { totals.model = models.keys.first }
        return totals
    }

    private func isRateLimitFailure(_ line: JSONObject) -> Bool {
        let status = line["api_error_status"]?.integer
        return RetryClassifier.isRateLimit(status: status) || (status == nil && assistantError == "rate_limit")
    }

    private func failureDetail(_ line: JSONObject) -> String {
        let errors = (line["errors"]?.arrayValue ?? []).map(\.flattenedText).filter { !$0.isEmpty }
        let detail = line["result"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? errors.joined(separator: "; ")
        return detail.isEmpty ? "no detail given" : detail
    }

    private func resultVerdict(_ line: JSONObject) -> TurnVerdict {
        let subtype = line["subtype"]?.stringValue ?? "success"
        let text = line["result"]?.stringValue
        if subtype == "success" && line["is_error"]?.boolValue != true {
            var data = resultData
            data["cli"] = "claude"
            data["cli_session_id"] = JSONValue(session.id)
            if let cost = runUsage?.costUsd { data["cost_usd"] = .number(cost) }
            if let total = line["total_cost_usd"] { data["cli_total_cost_usd"] = total }
            if let models = line["modelUsage"] { data["model_usage"] = models }
            if results > 1 { data["answers"] = JSONValue(results) }
            return .succeeded(text: text ?? lastText ?? "", data: data)
        }
        let detail = failureDetail(line)
        let status = line["api_error_status"]?.integer
        let retryable = RetryClassifier.isRetryable(status: status)
            || ["rate_limit", "server_error"].contains(assistantError ?? "")
            || RetryClassifier.isRetryable(text: detail)
        // A failed API call ends with subtype "success" and is_error: the subtype says nothing then.
        let labels = (subtype == "success" ? [] : [subtype]) + (status.map { ["HTTP \($0)"] } ?? [])
        let label = labels.isEmpty ? "" : " (\(labels.joined(separator: ", ")))"
        return .failed(message: "claude failed\(label): \(shortened(detail, to: 1000))", retryable: retryable)
    }

    /// A wait as people say it: "42s", "3m 20s", "4h 5m".
    static func describe(ms: Int) -> String {
        let seconds = (ms + 999) / 1000
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)m \(seconds % 60)s" }
        return "\(seconds / 3600)h \((seconds % 3600) / 60)m"
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

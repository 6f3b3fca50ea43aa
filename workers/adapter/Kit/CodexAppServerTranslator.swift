import DroverWire

/// What Codex's app-server (`codex-app-server`: JSON-RPC 2.0 over stdio, one JSON object a
/// line, without the "jsonrpc" member) says, as drover frames. Pure, like the stream
/// translators: one server message in, frames out, and the replies its requests need kept
/// for `takeReplies()`. It reads a turn's notifications (`item/started` / `item/completed`
/// with items `agentMessage`, `commandExecution`, `fileChange`, `mcpToolCall`, `webSearch`;
/// `thread/tokenUsage/updated`; `account/rateLimits/updated`; `error`; `turn/completed`) and
/// answers the server's requests: approvals by `approval`, anything else refused as unknown,
/// so the server never waits on drover. Frames have the shapes of the `codex exec --json`
/// translator's: messages, `progress` for tools. One translator serves every turn of a task;
/// responses to the adapter's own requests are the run's business, not read here.
public struct CodexAppServerTranslator: StreamTranslator {
    public static let cli = "codex-app-server"
    public let cliName = CodexAppServerTranslator.cli

    public let approval: CodexApproval
    private var session = SessionTracker(cli: CodexAppServerTranslator.cli)
    private var replies: [JSONObject] = []

    // The current turn.
    /// From `beginTurn()` to `turn/completed`, and the turn's id once `turn/started` named it:
    /// only its usage is this task's.
    private var turnUnderWay = false
    private var turnID: String?
    public private(set) var verdict: TurnVerdict?
    private var lastText: String?
    private var lastError: (message: String, status: Int?)?

    // Across turns.
    private var reportedItems: Set<String> = []
    private var reportedLimit: String?
    /// The task's usage: the sum of the `last` figures of each model call.
    public private(set) var runUsage: UsageTotals?
    /// The thread's running `total` last seen, so that a repeated update is not counted twice.
    private var lastTotal: JSONValue?

    public init(approval: CodexApproval = .decline) { self.approval = approval }

    public var cliSessionID: String? { session.id }

    /// The thread the adapter started or resumed, from the server's answer: its session frame.
    public mutating func sawThread(_ id: String?) -> [JSONObject] {
        session.saw(id.map { .string($0) }).map { [$0] } ?? []
    }

    /// A new turn is asked for: forget how the previous one ended.
    public mutating func beginTurn() {
        turnUnderWay = true
        turnID = nil
        verdict = nil
        lastText = nil
        lastError = nil
    }

    /// The replies owed to the server's requests seen so far, to write back as they are.
    public mutating func takeReplies() -> [JSONObject] {
        defer { replies = [] }
        return replies
    }

    public mutating func translate(_ message: JSONObject, nowMs: Int64) -> [JSONObject] {
        guard let method = message["method"]?.stringValue else { return [] }
        let params = message["params"]?.objectValue ?? JSONObject()
        if let id = message["id"], !id.isNull { return answer(request: method, id: id, params: params) }
        switch method {
        case "thread/started":
            return sawThread(params["thread"]?.objectValue?["id"]?.stringValue)
        case "item/started", "item/completed":
            guard let item = params["item"]?.objectValue else { return [] }
            return translate(item: item, completed: method == "item/completed")
        case "turn/started":
            if turnUnderWay { turnID = params["turn"]?.objectValue?["id"]?.stringValue }
            return []
        case "thread/tokenUsage/updated":
            countUsage(params["tokenUsage"]?.objectValue, turn: params["turnId"]?.stringValue)
            return []
        case "account/rateLimits/updated":
            return rateLimits(params["rateLimits"]?.objectValue, nowMs: nowMs)
        case "error":
            let error = params["error"]?.objectValue
            let text = error?["message"]?.stringValue ?? "unknown error"
            let status = Self.httpStatus(error?["codexErrorInfo"])
            if params["willRetry"]?.boolValue == true {
                return [Frames.log("codex is retrying: \(shortened(text, to: 1000))", level: "info")]
            }
            lastError = (text, status)
            return [Frames.log("codex: \(shortened(text, to: 1000))")] + rateLimit(text, status: status)
        case "turn/completed":
            return turnCompleted(params["turn"]?.objectValue ?? JSONObject())
        default:
            return []  // status changes, warnings, deltas, reasoning: nothing drover keeps
        }
    }

    /// The server has not ended with an answer of its own: it ended with its process.
    public func verdictAtCleanExit() -> TurnVerdict? { nil }

    // MARK: items

    private mutating func translate(item: JSONObject, completed: Bool) -> [JSONObject] {
        let id = item["id"]?.stringValue ?? ""
        switch item["type"]?.stringValue {
        case "agentMessage":
            guard completed, let text = item["text"]?.stringValue, !text.isEmpty else { return [] }
            lastText = text
            return [Frames.message(text)]
        case "commandExecution":
            guard firstSight(id) else { return [] }
            let command = Self.commandText(item)
            return [Frames.progress(tool: "shell", input: ["command": .string(command)], text: shortened(command, to: 200))]
        case "fileChange":
            guard firstSight(id) else { return [] }
            let changes = item["changes"] ?? .array([])
            let paths = (changes.arrayValue ?? []).compactMap { $0.objectValue?["path"]?.stringValue }
            return [Frames.progress(tool: "apply_patch", input: ["changes": changes], text: shortened("apply_patch " + paths.joined(separator: " "), to: 200))]
        case "mcpToolCall":
            guard firstSight(id) else { return [] }
            let name = "\(item["server"]?.stringValue ?? "mcp").\(item["tool"]?.stringValue ?? "tool")"
            return [Frames.progress(tool: name, input: item["arguments"] ?? .null, text: name)]
        case "webSearch":
            guard firstSight(id) else { return [] }
            let query = item["query"]?.stringValue ?? ""
            return [Frames.progress(tool: "web_search", input: ["query": .string(query)], text: shortened("web_search " + query, to: 200))]
        default:
            return []  // the user's own message, reasoning, plans
        }
    }

    /// The command as the model wrote it: `command` is Codex's wrapping of it
    /// (`/bin/bash -lc '...'`); `commandActions` keeps the model's own words.
    static func commandText(_ item: JSONObject) -> String {
        let actions = item["commandActions"]?.arrayValue?.compactMap { $0.objectValue?["command"]?.stringValue } ?? []
        if actions.count == 1 { return actions[0] }
        return item["command"]?.stringValue ?? ""
    }

    private mutating func firstSight(_ id: String) -> Bool {
        guard !id.isEmpty else { return true }
        return reportedItems.insert(id).inserted
    }

    // MARK: the server's requests

    private mutating func answer(request method: String, id: JSONValue, params: JSONObject) -> [JSONObject] {
        guard let result = approval.answer(method: method, params: params) else {
            replies.append(["id": id, "error": ["code": -32601, "message": .string("drover-adapter does not handle \(method)")]])
            return [Frames.log("codex-app-server asked \(method), which drover-adapter does not answer: refused")]
        }
        replies.append(["id": id, "result": .object(result)])
        let what = params["command"]?.stringValue ?? params["reason"]?.stringValue ?? method
        let verb = approval == .accept && method != "mcpServer/elicitation/request" ? "accepted" : "declined"
        return [Frames.log("\(verb) by --approval \(approval.rawValue): \(shortened(what, to: 300))", level: "info")]
    }

    // MARK: usage and limits

    /// `last` is one model call's figures and `total` the thread's running sum: the task
    /// counts the `last` of each new total that comes for the turn under way. A resumed
    /// thread's figures, which the server repeats (with the earlier turn's id) when it opens
    /// the thread, are earlier tasks' usage.
    private mutating func countUsage(_ tokenUsage: JSONObject?, turn: String?) {
        guard let tokenUsage, let last = tokenUsage["last"]?.objectValue else { return }
        if let total = tokenUsage["total"], total == lastTotal { return }
        lastTotal = tokenUsage["total"]
        guard turnUnderWay, turnID != nil, turn == nil || turn == turnID else { return }
        func count(_ key: String) -> Int { max(0, last[key]?.integer ?? 0) }
        // OpenAI counts cached input tokens inside the input tokens; drover does not.
        let cached = min(count("cachedInputTokens"), count("inputTokens"))
        let call = UsageTotals(inputTokens: count("inputTokens") - cached, outputTokens: count("outputTokens"),
                               cacheReadTokens: cached, cacheWriteTokens: count("cacheWriteInputTokens"))
        runUsage = runUsage.map { $0 + call } ?? call
    }

    /// The account's windows, as Codex read them from the API's `x-codex-*` headers after a
    /// response. Only a window that is used up is a limit for drover (a `rate_limit` frame
    /// cools the whole pool down), with a wait until that window resets; a window partly used
    /// is no refusal.
    private mutating func rateLimits(_ limits: JSONObject?, nowMs: Int64) -> [JSONObject] {
        guard let limits else { return [] }
        var frames: [JSONObject] = []
        for name in ["primary", "secondary"] {
            guard let window = limits[name]?.objectValue, let used = window["usedPercent"]?.numberValue else { continue }
            guard used >= 100 else { continue }
            var wait: Int?
            if let resetsAt = window["resetsAt"]?.numberValue { wait = max(0, Int(resetsAt * 1000) - Int(nowMs)) }
            let minutes = window["windowDurationMins"]?.integer.map { " of \($0) minutes" } ?? ""
            let message = "codex: the \(name) rate-limit window\(minutes) is used up (\(Int(used))%)"
            guard message != reportedLimit else { continue }
            reportedLimit = message
            frames.append(Frames.rateLimit(retryAfterMs: wait, message: message))
        }
        return frames
    }

    private mutating func rateLimit(_ message: String, status: Int?) -> [JSONObject] {
        let isLimit = status.map(RetryClassifier.isRateLimit(status:)) ?? RetryClassifier.isRateLimit(text: message)
        guard isLimit, message != reportedLimit else { return [] }
        reportedLimit = message
        return [Frames.rateLimit(retryAfterMs: nil, message: "codex: \(message)")]
    }

    /// The HTTP status inside `codexErrorInfo` (its `responseTooManyFailedAttempts`,
    /// `httpConnectionFailed`, `responseStreamDisconnected`, ... carry `httpStatusCode`).
    static func httpStatus(_ info: JSONValue?) -> Int? {
        guard let object = info?.objectValue else { return nil }
        for (_, value) in object.members {
            if let status = value.objectValue?["httpStatusCode"]?.integer { return status }
        }
        return nil
    }

    // MARK: the end of a turn

    private mutating func turnCompleted(_ turn: JSONObject) -> [JSONObject] {
        turnUnderWay = false
        turnID = nil
        switch turn["status"]?.stringValue {
        case "completed":
            var data: JSONObject = ["cli": .string(Self.cli)]
            data["cli_session_id"] = JSONValue(session.id)
            if let usage = runUsage {
                // As `codex exec --json` reports it: input with the cached tokens in it.
                data["usage"] = ["input_tokens": JSONValue(usage.inputTokens + usage.cacheReadTokens),
                                 "cached_input_tokens": JSONValue(usage.cacheReadTokens), "output_tokens": JSONValue(usage.outputTokens)]
            }
            verdict = .succeeded(text: lastText ?? "", data: data)
            return []
        case "interrupted":
            verdict = .failed(message: "codex's turn was interrupted", retryable: false)
            return []
        default:
            let error = turn["error"]?.objectValue
            let text = error?["message"]?.stringValue ?? lastError?.message ?? "no detail given"
            let status = Self.httpStatus(error?["codexErrorInfo"]) ?? lastError?.status
            let retryable = status.map(RetryClassifier.isRetryable(status:)) ?? RetryClassifier.isRetryable(text: text)
            let prefix = status.map { "codex failed (HTTP \($0))" } ?? "codex failed"
            verdict = .failed(message: "\(prefix): \(shortened(text, to: 1000))", retryable: retryable)
            return rateLimit(text, status: status)
        }
    }
}

import DroverWire

/// opencode's `opencode run --format json` stream (packages/opencode/src/cli/cmd/run.ts,
/// opencode 1.x): every line is `{type, timestamp, sessionID, ...}`; `step_start`,
/// `text` (`part.text`, once the part is complete), `reasoning`, `tool_use` (`part.tool`,
/// `part.state` with `status` completed or error, `input`, `title`), `step_finish`
/// (`part.cost`, `part.tokens`), `error` (`error.name`, `error.data.message`, and for API
/// errors `statusCode` and `isRetryable`), and, in newer releases, a closing `done`. Older
/// releases end with the process, so a clean exit after some output is success.
///
/// Usage: each `step_finish` adds its `tokens` (`input` without the cache, `output`,
/// `cache.read`, `cache.write`) and `cost`. A rate limit: an `APIError` with status 429 or
/// 529, or one marked retryable whose message speaks of a limit, becomes a `rate_limit` frame
/// (with the response's `retry-after-ms` or `retry-after` seconds when it has them).
public struct OpencodeTranslator: StreamTranslator {
    public let cliName = "opencode"
    private var session = SessionTracker(cli: "opencode")
    /// Texts of the current step: the last step's texts are the final answer.
    private var stepTexts: [String] = []
    private var lastTexts: [String] = []
    private var cost: Double?
    private var tokens: JSONValue?
    private var sawOutput = false
    public private(set) var verdict: TurnVerdict?
    public private(set) var runUsage: UsageTotals?

    public init() {}

    public var cliSessionID: String? { session.id }

    public mutating func translate(_ line: JSONObject, nowMs: Int64) -> [JSONObject] {
        var frames: [JSONObject] = []
        if let frame = session.saw(line["sessionID"]) { frames.append(frame) }
        sawOutput = true
        let part = line["part"]?.objectValue
        switch line["type"]?.stringValue {
        case "step_start":
            stepTexts = []
        case "text":
            let text = part?["text"]?.stringValue ?? ""
            guard !text.isEmpty else { break }
            stepTexts.append(text)
            lastTexts = stepTexts
            frames.append(Frames.message(text))
        case "tool_use":
            let tool = part?["tool"]?.stringValue ?? "tool"
            let state = part?["state"]?.objectValue
            let input = state?["input"] ?? .object(JSONObject())
            let title = state?["title"]?.stringValue ?? ""
            frames.append(Frames.progress(tool: tool, input: input, text: shortened(title.isEmpty ? tool : "\(tool) \(title)", to: 200)))
            if state?["status"]?.stringValue == "error" {
                frames.append(Frames.message(shortened("tool error: " + (state?["error"]?.flattenedText ?? ""), to: 2000), role: "tool"))
            }
        case "step_finish":
            if let stepCost = part?["cost"]?.numberValue { cost = sum(cost ?? 0, stepCost) }
            tokens = addingUsage(tokens, part?["tokens"])
            if let step = part?["tokens"]?.objectValue {
                let cache = step["cache"]?.objectValue
                func count(_ value: JSONValue?) -> Int { max(0, value?.integer ?? 0) }
                var usage = runUsage ?? UsageTotals(costUsd: 0)
                usage.inputTokens += count(step["input"])
                usage.outputTokens += count(step["output"])
                usage.cacheReadTokens += count(cache?["read"])
                usage.cacheWriteTokens += count(cache?["write"])
                usage.costUsd = cost
                runUsage = usage
            }
        case "error":
            guard verdict == nil else { break }
            verdict = failure(line["error"])
            if case .failed(let message, _)? = verdict, let wait = rateLimitWait(line["error"]) {
                frames.append(Frames.rateLimit(retryAfterMs: wait.ms, message: message))
            }
        case "done":
            if verdict == nil { verdict = success() }
        default:
            break
        }
        return frames
    }

    public func verdictAtCleanExit() -> TurnVerdict? {
        sawOutput ? success() : nil
    }

    private func success() -> TurnVerdict {
        var data: JSONObject = ["cli": "opencode"]
        data["cli_session_id"] = JSONValue(session.id)
        if let tokens { data["usage"] = tokens }
        if let cost { data["cost_usd"] = .number(cost) }
        return .succeeded(text: lastTexts.joined(separator: "\n\n"), data: data)
    }

    /// Nil unless the error is a rate limit; then the wait the response asked for, if it did.
    private func rateLimitWait(_ error: JSONValue?) -> RateLimitWait? {
        let data = error?.objectValue?["data"]?.objectValue
        let status = data?["statusCode"]?.integer
        let detail = data?["message"]?.stringValue ?? ""
        let limited = RetryClassifier.isRateLimit(status: status)
            || (data?["isRetryable"]?.boolValue == true && RetryClassifier.isRateLimit(text: detail))
        guard limited else { return nil }
        let headers = data?["responseHeaders"]?.objectValue
        func header(_ name: String) -> Double? {
            guard let text = headers?[name]?.stringValue, let value = Double(text.trimmed()), value.isFinite, value >= 0, value < 9e12 else { return nil }
            return value
        }
        if let ms = header("retry-after-ms") { return RateLimitWait(ms: Int(ms.rounded(.up))) }
        if let seconds = header("retry-after") { return RateLimitWait(ms: Int((seconds * 1000).rounded(.up))) }
        return RateLimitWait(ms: nil)
    }

    private func failure(_ error: JSONValue?) -> TurnVerdict {
        let object = error?.objectValue
        let name = object?["name"]?.stringValue ?? "error"
        let data = object?["data"]?.objectValue
        let detail = data?["message"]?.stringValue ?? (error.map { JSONWriter.string($0) } ?? "no detail given")
        let status = data?["statusCode"]?.integer
        let retryable = data?["isRetryable"]?.boolValue == true || RetryClassifier.isRetryable(status: status)
            || RetryClassifier.isRetryable(text: detail)
        let statusText = status.map { ", HTTP \($0)" } ?? ""
        return .failed(message: "opencode failed (\(name)\(statusText)): \(shortened(detail, to: 1000))", retryable: retryable)
    }
}

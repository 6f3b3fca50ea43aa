import DroverWire

/// opencode's `opencode run --format json` stream (packages/opencode/src/cli/cmd/run.ts,
/// opencode 1.x): every line is `{type, timestamp, sessionID, ...}`; `step_start`,
/// `text` (`part.text`, once the part is complete), `reasoning`, `tool_use` (`part.tool`,
/// `part.state` with `status` completed or error, `input`, `title`), `step_finish`
/// (`part.cost`, `part.tokens`), `error` (`error.name`, `error.data.message`, and for API
/// errors `statusCode` and `isRetryable`), and, in newer releases, a closing `done`. Older
/// releases end with the process, so a clean exit after some output is success.
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

    public init() {}

    public var cliSessionID: String? { session.id }

    public mutating func translate(_ line: JSONObject) -> [JSONObject] {
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
        case "error":
            guard verdict == nil else { break }
            verdict = failure(line["error"])
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

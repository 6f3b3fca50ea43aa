import DroverWire

/// How one CLI turn ended, by the CLI's own account.
public enum TurnVerdict: Equatable, Sendable {
    /// The final answer, and what goes into the result frame's `data` (usage, cost, ids).
    case succeeded(text: String, data: JSONObject)
    case failed(message: String, retryable: Bool)
}

/// Turns one CLI's streaming JSON output into drover frames. Pure: a JSON line (and the time
/// it was read) in, frames out, with what it has learnt (the CLI's session id, the turn's
/// verdict, its usage) kept as state. No I/O, no clock, so each CLI's format is tested
/// without a process.
public protocol StreamTranslator {
    /// The CLI's name as users know it ("claude"), used in messages and the session frame.
    var cliName: String { get }
    /// The CLI's own conversation id, once the stream has named it.
    var cliSessionID: String? { get }
    /// Set once the stream has reported the turn's final answer or failure.
    var verdict: TurnVerdict? { get }
    /// What this run of the CLI has used so far, once it has said (this run only: the adapter
    /// adds up a task's turns and sends the totals as `usage` frames).
    var runUsage: UsageTotals? { get }
    /// The conversation's cost so far by the CLI's own running count, for CLIs that report one
    /// (Claude Code's `total_cost_usd`): the next turn's starting point.
    var conversationCostUsd: Double? { get }
    /// Frames for drover from one JSON object line of the stream, read at `nowMs` (unix ms),
    /// which turns a reset time into a wait.
    mutating func translate(_ line: JSONObject, nowMs: Int64) -> [JSONObject]
    /// The verdict when the CLI exits 0 without having stated one: some formats end with
    /// the process rather than with a result line. Nil means "no answer".
    func verdictAtCleanExit() -> TurnVerdict?
    /// True while the CLI, after a verdict, still has work of its own under way that will bring
    /// another answer (Claude Code's background tasks): the adapter then waits for the CLI to
    /// end by itself instead of stopping it after `--linger`.
    var awaitsMoreAnswers: Bool { get }
}

extension StreamTranslator {
    public var conversationCostUsd: Double? { nil }
    public var awaitsMoreAnswers: Bool { false }
}

/// Token usage and cost as drover's `usage` frame counts them: `inputTokens` never includes
/// cached tokens (they are `cacheReadTokens` and `cacheWriteTokens`), whichever way the CLI
/// counts. `costUsd` nil: not known (drover then prices the tokens from its config).
public struct UsageTotals: Equatable, Sendable {
    public var inputTokens = 0
    public var outputTokens = 0
    public var cacheReadTokens = 0
    public var cacheWriteTokens = 0
    public var costUsd: Double?
    public var model: String?

    public init(inputTokens: Int = 0, outputTokens: Int = 0, cacheReadTokens: Int = 0, cacheWriteTokens: Int = 0, costUsd: Double? = nil, model: String? = nil) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cacheReadTokens = cacheReadTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.costUsd = costUsd
        self.model = model
    }

    /// Two runs together. A cost is known only if both are; the later model is named.
    public static func + (earlier: UsageTotals, later: UsageTotals) -> UsageTotals {
        var cost: Double?
        if let a = earlier.costUsd, let b = later.costUsd { cost = sum(a, b) }
        return UsageTotals(
            inputTokens: earlier.inputTokens + later.inputTokens, outputTokens: earlier.outputTokens + later.outputTokens,
            cacheReadTokens: earlier.cacheReadTokens + later.cacheReadTokens, cacheWriteTokens: earlier.cacheWriteTokens + later.cacheWriteTokens,
            costUsd: cost, model: later.model ?? earlier.model)
    }

    /// The `usage` frame of these totals.
    public var frame: JSONObject {
        var frame: JSONObject = [
            "type": "usage", "input_tokens": JSONValue(inputTokens), "output_tokens": JSONValue(outputTokens),
            "cache_read_tokens": JSONValue(cacheReadTokens), "cache_write_tokens": JSONValue(cacheWriteTokens),
        ]
        if let costUsd { frame["cost_usd"] = .number(costUsd) }
        if let model { frame["model"] = .string(model) }
        return frame
    }
}

/// Remembers the CLI's session id and announces it (once, and again if it changes) with a
/// `session` frame. drover keeps unknown frame types in the session's transcript, which is
/// how a later `drover continue` finds the id to resume.
struct SessionTracker {
    let cli: String
    private(set) var id: String?

    init(cli: String) { self.cli = cli }

    mutating func saw(_ value: JSONValue?) -> JSONObject? {
        guard let text = value?.stringValue, !text.isEmpty, text != id else { return nil }
        id = text
        return Frames.session(cli: cli, id: text)
    }
}

/// A rate limit a CLI reported, with the wait it was asked for (nil: none given).
struct RateLimitWait {
    var ms: Int?
}

/// The drover frames the translators produce.
enum Frames {
    static func session(cli: String, id: String) -> JSONObject {
        ["type": "session", "cli": .string(cli), "cli_session_id": .string(id)]
    }

    static func message(_ text: String, role: String = "assistant") -> JSONObject {
        ["type": "message", "role": .string(role), "text": .string(text)]
    }

    static func progress(tool: String, input: JSONValue, text: String) -> JSONObject {
        ["type": "progress", "tool": .string(tool), "input": input, "text": .string(text)]
    }

    static func todo(open: Int, total: Int) -> JSONObject {
        ["type": "todo", "open": JSONValue(open), "total": JSONValue(total)]
    }

    static func log(_ text: String, level: String = "warn") -> JSONObject {
        ["type": "log", "level": .string(level), "text": .string(text)]
    }

    /// The provider refused for a rate or quota limit: drover cools the task's pool down for
    /// `retryAfterMs` (nil: drover's own backoff).
    static func rateLimit(retryAfterMs: Int?, message: String) -> JSONObject {
        var frame: JSONObject = ["type": "rate_limit"]
        if let retryAfterMs { frame["retry_after_ms"] = JSONValue(max(0, retryAfterMs)) }
        frame["scope"] = "provider"
        frame["message"] = .string(shortened(message, to: 1000))
        return frame
    }
}

/// Which failures are worth retrying later: rate limits and overloads (HTTP 429, 529, 5xx),
/// by status code where the CLI reports one, else by the words CLIs use for them; and which of
/// them are rate limits, the provider refusing this account (429, 529 overloaded, quotas),
/// which cool drover's whole pool down.
public enum RetryClassifier {
    public static func isRateLimit(status: Int?) -> Bool {
        status == 429 || status == 529
    }

    public static func isRateLimit(text: String) -> Bool {
        let lower = text.lowercased()
        let phrases = ["rate limit", "rate_limit", "ratelimit", "rate-limit", "too many requests", "usage limit", "quota", "overloaded"]
        if phrases.contains(where: { lower.contains($0) }) { return true }
        return containsNumber(lower, 429) || containsNumber(lower, 529)
    }

    public static func isRetryable(status: Int?) -> Bool {
        guard let status else { return false }
        return status == 408 || status == 429 || (500...599).contains(status)
    }

    public static func isRetryable(text: String) -> Bool {
        let lower = text.lowercased()
        let phrases = [
            "rate limit", "rate_limit", "ratelimit", "too many requests", "overloaded", "usage limit",
            "service unavailable", "temporarily unavailable", "server_error", "internal server error",
        ]
        if phrases.contains(where: { lower.contains($0) }) { return true }
        return [429, 502, 503, 504, 529].contains { containsNumber(lower, $0) }
    }

    /// Whether `number` stands in `text` on its own (not as part of a longer number).
    static func containsNumber(_ text: String, _ number: Int) -> Bool {
        let bytes = Array(text.utf8)
        let digits = Array(String(number).utf8)
        guard bytes.count >= digits.count else { return false }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        for start in 0...(bytes.count - digits.count) where Array(bytes[start..<(start + digits.count)]) == digits {
            let before = start == 0 || !isDigit(bytes[start - 1])
            let after = start + digits.count == bytes.count || !isDigit(bytes[start + digits.count])
            if before && after { return true }
        }
        return false
    }
}

/// Text shortened for a message or an error, with how much was cut.
public func shortened(_ text: String, to limit: Int) -> String {
    guard text.utf8.count > limit else { return text }
    var cut = ""
    var used = 0
    for character in text {
        let size = character.utf8.count
        if used + size > limit { break }
        cut.append(character)
        used += size
    }
    return cut + "… [\(text.utf8.count - used) more bytes]"
}

extension JSONValue {
    /// A number as Int, when it is one.
    var integer: Int? {
        guard let number = numberValue, number.rounded() == number, abs(number) < 1e15 else { return nil }
        return Int(number)
    }

    /// Text of a tool result or content list, as far as it is text.
    var flattenedText: String {
        switch self {
        case .string(let text): return text
        case .array(let items): return items.map(\.flattenedText).filter { !$0.isEmpty }.joined(separator: "\n")
        case .object(let object):
            if let text = object["text"]?.stringValue { return text }
            return JSONWriter.string(self)
        case .null: return ""
        default: return JSONWriter.string(self)
        }
    }
}

/// Adds usage figures of several turns: numbers are summed member by member, anything
/// else takes the later value.
public func addingUsage(_ earlier: JSONValue?, _ later: JSONValue?) -> JSONValue? {
    guard let earlier else { return later }
    guard let later else { return earlier }
    switch (earlier, later) {
    case (.number(let a), .number(let b)):
        return .number(sum(a, b))
    case (.object(let a), .object(let b)):
        var sum = a
        for (key, value) in b.members { sum[key] = addingUsage(a[key], value) }
        return .object(sum)
    default:
        return later
    }
}

/// a + b without binary-fraction noise in dollar amounts (0.0262, not 0.026199999999999998).
func sum(_ a: Double, _ b: Double) -> Double {
    ((a + b) * 1e10).rounded() / 1e10
}

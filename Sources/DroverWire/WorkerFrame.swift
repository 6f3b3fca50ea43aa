/// A frame from a worker to the supervisor (SPEC section 5), decoded once and checked: a
/// field of the wrong type is an error that names the frame type and the field.
public enum WorkerFrame: Sendable, Equatable {
    case hello(protocolVersion: Int?, worker: String?, version: String?)
    case message(role: String, text: String)
    case progress(tool: String?, input: JSONValue?, text: String?)
    case todo(open: Int, total: Int?)
    case heartbeat
    case idle
    case result(text: String?, data: JSONValue?)
    case error(message: String?, retryable: Bool)
    case log(level: String, text: String)
    case rateLimit(retryAfterMs: Int?, scope: RateLimitScope, message: String?)
    case usage(UsageFigures)
    /// A type this supervisor does not know: kept in the transcript, otherwise ignored.
    case unknown(type: String)

    public enum RateLimitScope: String, Sendable {
        case provider, model
    }

    /// The totals a `usage` frame reports for the attempt so far.
    public struct UsageFigures: Sendable, Equatable {
        public var inputTokens: Int
        public var outputTokens: Int
        public var cacheReadTokens: Int?
        public var cacheWriteTokens: Int?
        public var costUsd: Double?
        public var model: String?
    }

    /// The frame's fields, checked. Absent and `null` are the same for optional fields.
    public static func decode(_ frame: Frame) throws(FrameFieldError) -> WorkerFrame {
        let fields = Fields(type: frame.type, object: frame.object)
        switch frame.type {
        case "hello":
            return .hello(protocolVersion: try fields.integer("protocol"), worker: try fields.string("worker"), version: try fields.string("version"))
        case "message":
            guard let text = try fields.string("text") else { throw fields.missing("text", "a string") }
            return .message(role: try fields.string("role") ?? "assistant", text: text)
        case "progress":
            return .progress(tool: try fields.string("tool"), input: fields.any("input"), text: try fields.string("text"))
        case "todo":
            guard let open = try fields.integer("open", atLeast: 0) else { throw fields.missing("open", "a whole number of 0 or more") }
            return .todo(open: open, total: try fields.integer("total", atLeast: 0))
        case "heartbeat":
            return .heartbeat
        case "idle":
            return .idle
        case "result":
            return .result(text: try fields.string("text"), data: fields.any("data"))
        case "error":
            return .error(message: try fields.string("message"), retryable: try fields.bool("retryable") ?? false)
        case "log":
            return .log(level: try fields.string("level") ?? "info", text: try fields.string("text") ?? "")
        case "rate_limit":
            let scopeName = try fields.string("scope") ?? "provider"
            guard let scope = RateLimitScope(rawValue: scopeName) else {
                throw FrameFieldError(type: frame.type, field: "scope", problem: "must be \"provider\" or \"model\", found \"\(scopeName)\"")
            }
            return .rateLimit(retryAfterMs: try fields.integer("retry_after_ms", atLeast: 0), scope: scope, message: try fields.string("message"))
        case "usage":
            return .usage(UsageFigures(
                inputTokens: try fields.integer("input_tokens", atLeast: 0) ?? 0,
                outputTokens: try fields.integer("output_tokens", atLeast: 0) ?? 0,
                cacheReadTokens: try fields.integer("cache_read_tokens", atLeast: 0),
                cacheWriteTokens: try fields.integer("cache_write_tokens", atLeast: 0),
                costUsd: try fields.number("cost_usd", atLeast: 0),
                model: try fields.string("model")))
        default:
            return .unknown(type: frame.type)
        }
    }
}

/// A frame whose `type` is known but one of whose fields is not what that type needs.
public struct FrameFieldError: Error, Sendable, Equatable, CustomStringConvertible {
    public let type: String
    public let field: String
    public let problem: String

    public var description: String { "a \"\(type)\" frame's \"\(field)\" \(problem)" }
}

/// Typed reads of one frame's members, each failing with the field's name.
private struct Fields {
    let type: String
    let object: JSONObject

    private func present(_ name: String) -> JSONValue? {
        guard let value = object[name], !value.isNull else { return nil }
        return value
    }

    private func wrong(_ name: String, _ expected: String, _ found: JSONValue) -> FrameFieldError {
        FrameFieldError(type: type, field: name, problem: "must be \(expected), found \(found.typeName)")
    }

    func missing(_ name: String, _ expected: String) -> FrameFieldError {
        FrameFieldError(type: type, field: name, problem: "is missing (it must be \(expected))")
    }

    func string(_ name: String) throws(FrameFieldError) -> String? {
        guard let value = present(name) else { return nil }
        guard case .string(let text) = value else { throw wrong(name, "a string", value) }
        return text
    }

    func bool(_ name: String) throws(FrameFieldError) -> Bool? {
        guard let value = present(name) else { return nil }
        guard case .bool(let flag) = value else { throw wrong(name, "true or false", value) }
        return flag
    }

    func integer(_ name: String, atLeast minimum: Int = .min) throws(FrameFieldError) -> Int? {
        guard let value = present(name) else { return nil }
        guard let n = value.intValue, n >= minimum else {
            throw wrong(name, minimum == 0 ? "a whole number of 0 or more" : "a whole number", value)
        }
        return n
    }

    func number(_ name: String, atLeast minimum: Double) throws(FrameFieldError) -> Double? {
        guard let value = present(name) else { return nil }
        guard let n = value.numberValue, n.isFinite, n >= minimum else { throw wrong(name, "a number of \(minimum) or more", value) }
        return n
    }

    func any(_ name: String) -> JSONValue? { present(name) }
}

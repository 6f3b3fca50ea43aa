import DroverCore
import DroverWire

/// Why the Claude Code hook could not do its work; the hook says so on stderr and lets
/// the session go on.
public struct ClaudeHookError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What Claude Code hands a hook command on stdin (checked against Claude Code 2.1.332):
/// every event has `session_id`, `transcript_path`, `cwd` and `hook_event_name`; PostToolUse
/// adds `tool_name`, `tool_input`, `tool_response`; Stop adds `stop_hook_active`. Members
/// this hook does not use are ignored, since Claude Code adds new ones often.
public struct ClaudeHookInput: Sendable {
    public enum Event: Sendable {
        case stop
        case postToolUse(tool: String, response: JSONValue?)
        case userPromptSubmit
        /// An event the hook has nothing to say to (SessionStart, SubagentStop, ...).
        case other(String)

        /// The name Claude Code gives it, as hookSpecificOutput repeats it.
        public var name: String {
            switch self {
            case .stop: "Stop"
            case .postToolUse: "PostToolUse"
            case .userPromptSubmit: "UserPromptSubmit"
            case .other(let name): name
            }
        }
    }

    public let sessionID: String
    public let transcriptPath: String?
    public let event: Event

    public init(sessionID: String, transcriptPath: String?, event: Event) {
        self.sessionID = sessionID
        self.transcriptPath = transcriptPath
        self.event = event
    }

    /// Reads the stdin document; the error names what is wrong with it.
    public init(bytes: [UInt8]) throws(ClaudeHookError) {
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(bytes).value
        } catch {
            throw ClaudeHookError("the hook input is not JSON: \(error)")
        }
        guard let object = parsed.objectValue else { throw ClaudeHookError("the hook input is not a JSON object") }
        let fields = FieldReader(lenient: object)
        do {
            sessionID = try fields.required("session_id", fields.string)
            transcriptPath = try fields.string("transcript_path").flatMap { $0.isEmpty ? nil : $0 }
            let name = try fields.required("hook_event_name", fields.string)
            switch name {
            case "Stop": event = .stop
            case "UserPromptSubmit": event = .userPromptSubmit
            case "PostToolUse": event = .postToolUse(tool: try fields.string("tool_name") ?? "", response: fields.value("tool_response"))
            default: event = .other(name)
            }
        } catch {
            throw ClaudeHookError("the hook input: \(error.message)")
        }
        guard !sessionID.isEmpty else { throw ClaudeHookError("the hook input has an empty session_id") }
    }
}

/// What the hook prints on stdout for Claude Code (nothing at all means "go on").
public enum ClaudeHookOutput: Sendable, Equatable {
    /// Stop: the model goes on, with `reason` as its next input.
    case blockStop(reason: String)
    /// PostToolUse, UserPromptSubmit: `text` joins the conversation.
    case additionalContext(event: String, text: String)

    public func json() -> JSONObject {
        switch self {
        case .blockStop(let reason):
            ["decision": "block", "reason": .string(reason)]
        case .additionalContext(let event, let text):
            ["hookSpecificOutput": ["hookEventName": .string(event), "additionalContext": .string(text)]]
        }
    }
}

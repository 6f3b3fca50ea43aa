import DroverWire

/// What to add to an MCP client so that it runs `drover mcp` (and, for Claude Code, drover's
/// hooks): pure text, so that `drover mcp` and `drover-mcp` print the same thing.
public enum McpClient: String, CaseIterable, Sendable {
    case claude, codex, opencode
}

/// One piece of text and the file of the client it belongs in.
public struct McpClientSnippet: Sendable, Equatable {
    /// Where it goes, for a person: "~/.codex/config.toml".
    public let destination: String
    public let text: String
}

public enum McpClientSnippets {
    /// The snippets for a client. `program` is drover's absolute path; `serverArguments` the
    /// words after it that start the MCP server (["mcp", "--state-dir", ...]); `hookCommand`
    /// the shell command line of `drover hook claude ...` (Claude Code only).
    public static func snippets(for client: McpClient, program: String, serverArguments: [String], hookCommand: String) -> [McpClientSnippet] {
        switch client {
        case .claude:
            return [
                McpClientSnippet(destination: ".mcp.json (or claude --mcp-config FILE)", text: claudeServers(program: program, arguments: serverArguments)),
                McpClientSnippet(destination: ".claude/settings.json (hooks)", text: claudeHooks(hookCommand: hookCommand)),
            ]
        case .codex:
            return [McpClientSnippet(destination: "~/.codex/config.toml", text: codexTable(program: program, arguments: serverArguments))]
        case .opencode:
            return [McpClientSnippet(destination: "opencode.json (or ~/.config/opencode/opencode.json)", text: opencodeEntry(program: program, arguments: serverArguments))]
        }
    }

    /// Claude Code's project `.mcp.json`: `{"mcpServers": {"drover": {"type", "command", "args"}}}`,
    /// as `claude mcp add --scope project` writes it.
    public static func claudeServers(program: String, arguments: [String]) -> String {
        let server: JSONObject = ["type": "stdio", "command": .string(program), "args": .array(arguments.map { .string($0) })]
        return JSONWriter.string(["mcpServers": ["drover": .object(server)]])
    }

    /// Claude Code's settings `hooks`: drover's hook after each tool call, on each prompt and at
    /// the end of a turn, so the session hears of finished tasks.
    public static func claudeHooks(hookCommand: String) -> String {
        let hook: JSONValue = [["type": "command", "command": .string(hookCommand), "timeout": 10]]
        return JSONWriter.string(["hooks": [
            "PostToolUse": [["matcher": "*", "hooks": hook]],
            "UserPromptSubmit": [["hooks": hook]],
            "Stop": [["hooks": hook]],
        ]])
    }

    /// Codex's `config.toml` table `[mcp_servers.drover]` with `command` and `args`.
    public static func codexTable(program: String, arguments: [String]) -> String {
        let args = arguments.map(tomlString).joined(separator: ", ")
        return "[mcp_servers.drover]\ncommand = \(tomlString(program))\nargs = [\(args)]\n"
    }

    /// opencode's `opencode.json` `mcp` entry: a local server is one argv array.
    public static func opencodeEntry(program: String, arguments: [String]) -> String {
        let server: JSONObject = ["type": "local", "command": .array(([program] + arguments).map { .string($0) }), "enabled": true]
        return JSONWriter.string(["$schema": "https://opencode.ai/config.json", "mcp": ["drover": .object(server)]])
    }

    /// A TOML basic string: quotes, backslashes and control characters escaped.
    public static func tomlString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

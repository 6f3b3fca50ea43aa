/// The names of drover's MCP tools: the MCP server offers them, and the Claude Code hook
/// looks for them in a session's tool calls.
public enum DroverToolNames {
    public static let delegateTask = "delegate_task"
    public static let backgroundOutput = "background_output"
    public static let backgroundCancel = "background_cancel"

    public static let all = [delegateTask, backgroundOutput, backgroundCancel]
}

import DroverCore
import DroverTaskNotices
import MCP

/// The three tools of SPEC section 9, described for the model that will call them.
enum DelegationTools {
    static let delegateTask = DroverToolNames.delegateTask
    static let backgroundOutput = DroverToolNames.backgroundOutput
    static let backgroundCancel = DroverToolNames.backgroundCancel

    /// The longest a `background_output` call may block (SPEC section 9).
    static let maxTimeoutMs = 600_000
    static let defaultTimeoutMs = 60_000

    /// What the model may count on when a background task ends: only what every client
    /// delivers (a tool answer), and the hook where the user set it up.
    static let endPromise = "When it ends, the next answer of any drover tool begins with its status "
        + "(with drover's Claude Code hook, the end also appears in the conversation)."

    static let instructions = """
        drover runs background agents for you. delegate_task starts one and returns at once with its task id; \
        background_output reads its result (block: true waits for it); background_cancel stops it. When a task ends, \
        the next answer of any drover tool begins with the tasks that ended since the previous one (with drover's \
        Claude Code hook, ends also appear in the conversation). Do not wait idly: go on with other work, and call \
        background_output with block: true when you need a result.
        """

    /// Each description starts with words to search by: clients such as Claude Code hide
    /// MCP tools behind a search, and a model looks for what it wants done, not for names.
    static let searchWords = (
        delegate: "background agent task delegate parallel subagent async worker launch:",
        output: "background agent task result output status wait block subagent:",
        cancel: "background agent task cancel stop kill abort subagent:"
    )

    static func all(agents: [AgentConfig]) -> [Tool] {
        let agentList = agents.sorted { $0.name < $1.name }.map { agent in
            var line = "- \(agent.name)"
            if let description = agent.description { line += ": \(description)" }
            return line
        }.joined(separator: "\n")
        return [
            Tool(
                name: delegateTask,
                description: """
                    \(searchWords.delegate)
                    Hand a task to a background agent and keep working while it runs. Returns at once with a \
                    task id (bg_...) and a session id (ses_...). When the task ends, the next answer of any drover \
                    tool begins with its status (with drover's Claude Code hook, the end also appears in the \
                    conversation); background_output gives its result. Launch several tasks in a row to run them in \
                    parallel (drover holds each provider and model to its concurrency limit and queues the \
                    rest). To follow up on finished work, pass its session_id with a new prompt: the agent \
                    resumes the same conversation. Set run_in_background to false only when you cannot go on \
                    without the answer.
                    Agents:
                    \(agentList)
                    """,
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "description": .object(["type": "string", "description": "A short (3-8 words) title for the task, shown in status tables."]),
                        "prompt": .object(["type": "string", "description": "The full instructions for the agent. It sees nothing else of your conversation, so include every detail it needs."]),
                        "agent": .object(["type": "string", "description": "Which agent runs it, one of those listed above (required unless session_id is given)."]),
                        "run_in_background": .object(["type": "boolean", "description": "true (default): answer at once. false: wait for the task and answer with its result.", "default": true]),
                        "session_id": .object(["type": "string", "description": "Continue this session (ses_... from an earlier delegate_task) instead of starting a new one."]),
                        "provider": .object(["type": "string", "description": "Override the agent's provider (rarely needed)."]),
                        "model": .object(["type": "string", "description": "Override the agent's model (rarely needed)."]),
                        "after": .object(["type": "array", "items": .object(["type": "string"]),
                                          "description": "Task ids (bg_...) that must complete first; the task waits for them, and is cancelled if one does not complete. {result:bg_...} in the prompt becomes that task's result."]),
                        "priority": .object(["type": "integer", "description": "Higher starts first among tasks waiting for the same agent pool (default 0)."]),
                        "ttl": .object(["type": "string", "description": "Time limit of the task, e.g. 90s, 20m, 2h (default: the agent's)."]),
                        "sandbox": .object(["type": "string", "enum": .array(["workdir", "readonly", "none"]),
                                            "description": "Run the agent under a sandbox: workdir (it may write only its working folder and /tmp), readonly, or none (the filesystem as it is); credentials and other tasks' files are hidden either way."]),
                        "worktree": .object(["type": "boolean", "description": "true: the agent works in a git worktree of its own on the branch drover/<task id>, so parallel coding agents never overwrite each other's files; its change is committed there for the user to review and apply (default false)."]),
                        "repo": .object(["type": "string", "description": "With worktree: the repository (default: this server's working folder)."]),
                        "base": .object(["type": "string", "description": "With worktree: the commit or branch to start from (default HEAD now), or @bg_... to start from that task's branch (it is waited for)."]),
                    ]),
                    "required": .array(["prompt"]),
                ]),
                annotations: .init(title: "Delegate a task to a background agent", readOnlyHint: false, destructiveHint: false, openWorldHint: true)
            ),
            Tool(
                name: backgroundOutput,
                description: """
                    \(searchWords.output)
                    The state or result of a background task. For a running task: its status table and prompt; \
                    for a finished one: its result. With block: true, waits until the task ends or timeout ms \
                    pass (default 60000, at most 600000). Prefer going on with other work: each drover answer \
                    begins with the tasks that ended since the previous one.
                    """,
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "task_id": .object(["type": "string", "description": "The task id (bg_...) that delegate_task returned."]),
                        "block": .object(["type": "boolean", "description": "Wait for the task to end (default false).", "default": false]),
                        "timeout": .object(["type": "number", "description": "With block: the longest wait in milliseconds (default 60000, at most 600000).", "minimum": 0, "maximum": .int(maxTimeoutMs)]),
                    ]),
                    "required": .array(["task_id"]),
                ]),
                annotations: .init(title: "Read a background task's result", readOnlyHint: true, openWorldHint: false)
            ),
            Tool(
                name: backgroundCancel,
                description: """
                    \(searchWords.cancel)
                    Cancel background tasks: one (taskId) or every task that has not ended (all: true). \
                    Answers once their processes are gone, with the sessions that can be continued later.
                    """,
                inputSchema: .object([
                    "type": "object",
                    "properties": .object([
                        "taskId": .object(["type": "string", "description": "The task id (bg_...) to cancel."]),
                        "all": .object(["type": "boolean", "description": "Cancel every task that has not ended.", "default": false]),
                    ]),
                ]),
                annotations: .init(title: "Cancel background tasks", readOnlyHint: false, destructiveHint: true, openWorldHint: false)
            ),
        ]
    }
}

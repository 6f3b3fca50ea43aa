import DroverWire

/// How the adapter answers the approval requests of Codex's app-server (a command to run
/// outside the sandbox, a file change, more permissions). Nobody watches a background task,
/// so the answer is a policy fixed in the agent's command.
public enum CodexApproval: String, CaseIterable, Sendable {
    /// Decline every request: the sandbox is the limit (the default).
    case decline
    /// Accept every request: the model may leave the sandbox whenever it asks to.
    case accept

    /// The answer to one server request, or nil when the method is no approval (the caller
    /// then refuses it as unknown). MCP elicitations are declined either way: they ask for
    /// input only a person can give.
    func answer(method: String, params: JSONObject) -> JSONObject? {
        let accepted = self == .accept
        switch method {
        case "item/commandExecution/requestApproval", "item/fileChange/requestApproval":
            return ["decision": accepted ? "accept" : "decline"]
        case "execCommandApproval", "applyPatchApproval":
            // The older (v1) methods spell the answer their way.
            return ["decision": accepted ? "approved" : "denied"]
        case "item/permissions/requestApproval":
            // Granting is handing back what was asked for; an empty grant declines.
            return ["permissions": accepted ? (params["permissions"] ?? [:]) : [:], "scope": "turn"]
        case "mcpServer/elicitation/request":
            return ["action": "decline"]
        default:
            return nil
        }
    }
}

/// When Codex asks for approval (the app-server's `approvalPolicy`). "untrusted" can be
/// chosen only this way: Codex 0.159's config refuses it.
public enum CodexApprovalPolicy: String, CaseIterable, Sendable {
    case untrusted
    case onFailure = "on-failure"
    case onRequest = "on-request"
    case never
}

/// The sandbox a thread's commands run in (the app-server's `sandbox` parameter). Codex
/// sandboxes Linux commands with bubblewrap: workspace-write and read-only need it.
public enum CodexSandbox: String, CaseIterable, Sendable {
    case readOnly = "read-only"
    /// Writes only under the task's folder; the default, as for `codex exec --full-auto`.
    case workspaceWrite = "workspace-write"
    case dangerFullAccess = "danger-full-access"
}

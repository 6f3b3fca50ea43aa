import DroverCore
import DroverDaemon
import DroverWire
import MCP
import Synchronization

/// `drover mcp`: the tools delegate_task, background_output and background_cancel
/// (SPEC section 9) over MCP, each a request to the daemon.
public final class DelegationServer: Sendable {
    private let gateway: DaemonGateway
    private let agents: [AgentConfig]
    private let server: Server
    private let watcher: CompletionWatcher
    /// Tool calls still being answered: a client that closes its end of stdin after its
    /// last request still gets the answers (within drainLimitMs).
    private let callsInFlight = Mutex(0)
    private static let drainLimitMs = 10_000

    public init(gateway: DaemonGateway, agents: [AgentConfig], version: String) {
        self.gateway = gateway
        self.agents = agents
        let server = Server(
            name: "drover", version: version,
            instructions: """
                drover runs background agents for you. delegate_task starts one and returns at once; \
                you are notified when it ends; background_output reads its result; background_cancel stops it.
                """,
            capabilities: .init(logging: .init(), tools: .init(listChanged: false))
        )
        self.server = server
        watcher = CompletionWatcher(gateway: gateway) { ending in
            Task { try? await server.log(level: ending.status == "completed" ? .info : .warning, logger: "drover", data: Self.notification(ending)) }
        }
    }

    /// Serves until the client closes the connection.
    public func run(transport: any Transport) async throws {
        let tools = DelegationTools.all(agents: agents)
        await server.withMethodHandler(ListTools.self) { _ in .init(tools: tools) }
        await server.withMethodHandler(CallTool.self) { [self] params in
            callsInFlight.withLock { $0 += 1 }
            defer { callsInFlight.withLock { $0 -= 1 } }
            return await call(params.name, ToolArguments(params.arguments))
        }
        try await server.start(transport: transport)
        await server.waitUntilCompleted()
        var waitedMs = 0
        while callsInFlight.withLock({ $0 }) > 0 && waitedMs < Self.drainLimitMs {
            try? await Task.sleep(for: .milliseconds(10))
            waitedMs += 10
        }
    }

    func call(_ tool: String, _ arguments: ToolArguments) async -> CallTool.Result {
        do {
            let text: String
            switch tool {
            case DelegationTools.delegateTask: text = try await delegate(arguments)
            case DelegationTools.backgroundOutput: text = try await output(arguments)
            case DelegationTools.backgroundCancel: text = try await cancel(arguments)
            default:
                throw ToolInputError("unknown tool \"\(tool)\"; the tools are \(DelegationTools.delegateTask), \(DelegationTools.backgroundOutput) and \(DelegationTools.backgroundCancel)")
            }
            return Self.answer(text, isError: false)
        } catch let error as ToolInputError {
            return Self.answer("Error: \(error.message).", isError: true)
        } catch let error as ClientError {
            return Self.answer("Error: \(Self.advice(for: error))", isError: true)
        } catch {
            return Self.answer("Error: \(error)", isError: true)
        }
    }

    // MARK: the tools

    private func delegate(_ arguments: ToolArguments) async throws -> String {
        guard let prompt = try arguments.string("prompt") else {
            throw ToolInputError("prompt is required: the full instructions for the agent")
        }
        let session = try arguments.string("session_id")
        let agent = try arguments.string("agent")
        let background = try arguments.bool("run_in_background", default: true)
        let description = try arguments.string("description") ?? Self.title(from: prompt)
        if session == nil && agent == nil {
            throw ToolInputError("agent is required for a new task: one of \(agents.map(\.name).sorted().joined(separator: ", ")) (or give session_id to continue a session)")
        }
        if let session, !TaskIdentifiers.isSessionID(session) {
            throw ToolInputError(TaskIdentifiers.isTaskID(session)
                ? "session_id \(session) is a task id; give its session id (ses_...), which delegate_task and background_output show"
                : "session_id \(session) is not a session id (ses_ and 8 hex digits)")
        }
        if background { try await watcher.ensureFollowing() }
        let answer: LaunchReply
        if let session {
            answer = try await gateway.call(ContinueRequest(session: session, prompt: prompt, description: description))
        } else {
            var task = TaskRequest(agent: agent!, prompt: prompt, description: description)
            task.provider = try arguments.string("provider")
            task.model = try arguments.string("model")
            answer = try await gateway.call(LaunchRequest(task: task))
        }
        let taskID = answer.taskID
        let sessionID = answer.sessionID
        let task = try await gateway.call(StatusRequest(ids: [taskID])).tasks.first?.json ?? [:]
        let agentName = task["agent"]?.stringValue ?? agent ?? ""
        if answer.delivered {
            return """
                Prompt delivered to the running task \(taskID) of session \(sessionID); its answer will be part of that task's result.
                Use background_output with task_id "\(taskID)" to check on it.
                """
        }
        guard background else {
            let ended = try await gateway.call(OutputRequest(id: taskID, wait: true))
            return TaskText.resultBlock(ended.task.json, result: ended.result)
        }
        watcher.watch(taskID, .init(description: description, agent: agentName))
        return """
            Background task launched successfully.

            Task ID: \(taskID)
            Session ID: \(sessionID)
            Description: \(description)
            Agent: \(agentName)
            Status: \(task["status"]?.stringValue ?? answer.status.rawValue)

            You will be notified when it ends. Meanwhile, go on with other work.
            To read its result: background_output with task_id "\(taskID)" (block: true waits for it).
            To follow up later: delegate_task with session_id "\(sessionID)" and a new prompt.
            """
    }

    private func output(_ arguments: ToolArguments) async throws -> String {
        guard let taskID = try arguments.string("task_id") else {
            throw ToolInputError("task_id is required: the task id (bg_...) that delegate_task returned")
        }
        let block = try arguments.bool("block", default: false)
        let timeout = try arguments.milliseconds("timeout", default: DelegationTools.defaultTimeoutMs, in: 0...DelegationTools.maxTimeoutMs)
        let answer = try await gateway.call(block ? OutputRequest(id: taskID, wait: true, timeoutMs: timeout) : OutputRequest(id: taskID))
        let task = answer.task.json
        if answer.task.status.isTerminal {
            return TaskText.resultBlock(task, result: answer.result)
        }
        var lines = ["Task Status", "", TaskText.statusTable([task])]
        if answer.timedOut {
            lines += ["", "Still running after waiting \(DurationText.format(milliseconds: timeout)). Call again to wait more, or go on with other work: you will be notified when it ends."]
        }
        if let prompt = task["prompt"]?.stringValue { lines += ["", "Prompt:", prompt] }
        return lines.joined(separator: "\n")
    }

    private func cancel(_ arguments: ToolArguments) async throws -> String {
        let taskID = try arguments.string("taskId") ?? arguments.string("task_id")
        let all = try arguments.bool("all", default: false)
        let selection: TaskSelection
        switch (taskID, all) {
        case (nil, false): throw ToolInputError("give taskId (a bg_... id) to cancel one task, or all: true to cancel every task that has not ended")
        case (.some, true): throw ToolInputError("give taskId or all: true, not both")
        case (let id?, false): selection = .ids([id])
        case (nil, true): selection = .all
        }
        let answer = try await gateway.call(CancelRequest(selection))
        var text = TaskText.cancelReport(answer) { "delegate_task with session_id \"\($0)\" and a new prompt" }
        if !answer.alreadyEnded.isEmpty {
            text += "\n\nUse background_output to read the results of the tasks that had already ended."
        }
        return text
    }

    // MARK: text

    private static func answer(_ text: String, isError: Bool) -> CallTool.Result {
        .init(content: [.text(text: text, annotations: nil, _meta: nil)], isError: isError)
    }

    /// The first line of the prompt, cut to a title's length.
    static func title(from prompt: String) -> String {
        let line = TaskText.oneLine(prompt)
        return line.count > 60 ? String(line.prefix(59)) + "…" : line
    }

    /// The daemon's refusal with what to do about it.
    static func advice(for error: ClientError) -> String {
        var text = error.message
        if text.hasPrefix("no such task") {
            text += ". Give a task id (bg_...) that delegate_task returned"
        } else if text.hasPrefix("no such session") {
            text += ". Give a session id (ses_...) that delegate_task returned, or leave session_id out to start a new session"
        }
        return text.hasSuffix(".") ? text : text + "."
    }

    static func notification(_ ending: CompletionWatcher.Ending) -> Value {
        var status = ending.status
        if let reason = ending.reason, status != "completed" { status += " (\(reason))" }
        let message = "Background task \(ending.taskID) (\(ending.watched.description), agent \(ending.watched.agent)) ended: \(status). "
            + "Use background_output with task_id \"\(ending.taskID)\" to read its result."
        var data: [String: Value] = [
            "message": .string(message), "task_id": .string(ending.taskID), "session_id": .string(ending.sessionID),
            "status": .string(ending.status), "description": .string(ending.watched.description),
        ]
        if let reason = ending.reason { data["reason"] = .string(reason) }
        return .object(data)
    }
}

import DroverCore
import DroverDaemon
import DroverTaskNotices
import DroverWire
import MCP
import Synchronization

/// `drover mcp`: the tools delegate_task, background_output and background_cancel
/// (SPEC section 9) over MCP, each a request to the daemon. Every answer begins with the
/// ends of this server's tasks that came since its previous answer: the one channel every
/// client delivers to its model (a logging notification is sent too, for clients that show it).
public final class DelegationServer: Sendable {
    private let gateway: DaemonGateway
    private let agents: [AgentConfig]
    /// The config this server was told to use (else the lookup order's), named to the
    /// daemon with each task it starts.
    private let configFile: String?
    private let server: Server
    private let watcher: CompletionWatcher
    private let inbox = EndingInbox()
    /// Tool calls still being answered: a client that closes its end of stdin after its
    /// last request still gets the answers (within drainLimitMs).
    private let callsInFlight = Mutex(0)
    private static let drainLimitMs = 10_000

    public init(gateway: DaemonGateway, agents: [AgentConfig], version: String, configFile: String? = nil) {
        self.gateway = gateway
        self.agents = agents
        self.configFile = configFile
        let server = Server(
            name: "drover", version: version,
            instructions: DelegationTools.instructions,
            capabilities: .init(logging: .init(), tools: .init(listChanged: false))
        )
        self.server = server
        let inbox = inbox
        watcher = CompletionWatcher(gateway: gateway) { ending in
            inbox.add(ending.ending)
            Task { try? await server.log(level: ending.status == .completed ? .info : .warning, logger: "drover", data: Self.notification(ending)) }
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
        let answer: ToolAnswer
        var isError = false
        do {
            switch tool {
            case DelegationTools.delegateTask: answer = try await delegate(arguments)
            case DelegationTools.backgroundOutput: answer = try await output(arguments)
            case DelegationTools.backgroundCancel: answer = try await cancel(arguments)
            default:
                throw ToolInputError("unknown tool \"\(tool)\"; the tools are \(DelegationTools.delegateTask), \(DelegationTools.backgroundOutput) and \(DelegationTools.backgroundCancel)")
            }
        } catch let error as ToolInputError {
            (answer, isError) = (ToolAnswer("Error: \(error.message)."), true)
        } catch let error as ClientError {
            (answer, isError) = (ToolAnswer("Error: \(Self.advice(for: error))"), true)
        } catch {
            (answer, isError) = (ToolAnswer("Error: \(error)"), true)
        }
        // Taken after the tool's work, so an end that came while it ran is in this answer;
        // the daemon is asked too, since its event stream may lag behind what it knows.
        await watcher.catchUp()
        let endings = inbox.take(excluding: answer.tellsEndOf)
        return Self.answer(TaskEndingText.answer(answer.text, after: endings), isError: isError)
    }

    /// A tool's text, and the tasks whose end it tells itself (so the ends heading the
    /// answer leave them out).
    struct ToolAnswer {
        var text: String
        var tellsEndOf: [String] = []

        init(_ text: String, tellsEndOf: [String] = []) {
            self.text = text
            self.tellsEndOf = tellsEndOf
        }
    }

    // MARK: the tools

    /// `worktree`, `repo` and `base`: a coding task in a git worktree of its own.
    static func readWorktree(_ arguments: ToolArguments, into task: inout TaskRequest) throws(ToolInputError) {
        let repo = try arguments.string("repo")
        let base = try arguments.string("base")
        guard try arguments.bool("worktree", default: false) else {
            if repo != nil || base != nil { throw ToolInputError("repo and base are for a worktree task: give worktree: true too") }
            return
        }
        if let base, base.hasPrefix("@") {
            let dependency = String(base.dropFirst())
            guard TaskIdentifiers.isTaskID(dependency) else { throw ToolInputError("base \(base): @ must be followed by a task id (bg_...)") }
            if !task.after.contains(dependency) { task.after.append(dependency) }
        }
        task.workdir = .worktree
        task.worktree.repo = FileSystem.absolute(repo ?? FileSystem.currentDirectory())
        task.worktree.base = base
    }

    private func delegate(_ arguments: ToolArguments) async throws -> ToolAnswer {
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
        // The passEnv values of the user's agent, whose environment started this server.
        let client = ClientContext.current(configFile: configFile, environment: ProcessEnvironment.current(),
                                           agents: agent.map { name in agents.filter { $0.name == name } } ?? agents)
        if let session {
            answer = try await gateway.call(ContinueRequest(session: session, prompt: prompt, description: description, client: client))
        } else {
            var task = TaskRequest(agent: agent!, prompt: prompt, description: description)
            task.provider = try arguments.string("provider")
            task.model = try arguments.string("model")
            task.after = try arguments.taskIDs("after")
            for id in task.after where !TaskIdentifiers.isTaskID(id) {
                throw ToolInputError("after: \(id) is not a task id (bg_ and 8 hex digits, as delegate_task returned it)")
            }
            task.priority = try arguments.integer("priority", in: TaskRequest.priorityRange) ?? 0
            if let ttl = try arguments.string("ttl") {
                guard let ms = DurationText.milliseconds(ttl), ms > 0 else { throw ToolInputError("ttl: \"\(ttl)\" is not a duration (such as 90s, 20m, 2h)") }
                task.timers.taskTtl = ms
            }
            if let sandbox = try arguments.string("sandbox") {
                guard let filesystem = SandboxSettings.Filesystem(rawValue: sandbox) else {
                    throw ToolInputError("sandbox: expected workdir, readonly or none, found \"\(sandbox)\"")
                }
                task.sandbox = SandboxSettings(filesystem: filesystem)
            }
            try Self.readWorktree(arguments, into: &task)
            answer = try await gateway.call(LaunchRequest(task: task, client: client))
        }
        let taskID = answer.taskID
        let sessionID = answer.sessionID
        let task = try await gateway.call(StatusRequest(ids: [taskID])).tasks.first?.json ?? [:]
        let agentName = task["agent"]?.stringValue ?? agent ?? ""
        if answer.delivered {
            return ToolAnswer("""
                Prompt delivered to the running task \(taskID) of session \(sessionID); its answer will be part of that task's result.
                Use background_output with task_id "\(taskID)" to check on it.
                """)
        }
        guard background else {
            let ended = try await gateway.call(OutputRequest(id: taskID, wait: true))
            return ToolAnswer(TaskText.resultBlock(ended.task.json, result: ended.result), tellsEndOf: [taskID])
        }
        watcher.watch(taskID, .init(description: description, agent: agentName))
        return ToolAnswer("""
            Background task launched successfully.

            Task ID: \(taskID)
            Session ID: \(sessionID)
            Description: \(description)
            Agent: \(agentName)
            Status: \(task["status"]?.stringValue ?? answer.status.rawValue)

            \(DelegationTools.endPromise) Meanwhile, go on with other work.
            To read its result: background_output with task_id "\(taskID)" (block: true waits for it).
            To follow up later: delegate_task with session_id "\(sessionID)" and a new prompt.
            """)
    }

    private func output(_ arguments: ToolArguments) async throws -> ToolAnswer {
        guard let taskID = try arguments.string("task_id") else {
            throw ToolInputError("task_id is required: the task id (bg_...) that delegate_task returned")
        }
        let block = try arguments.bool("block", default: false)
        let timeout = try arguments.milliseconds("timeout", default: DelegationTools.defaultTimeoutMs, in: 0...DelegationTools.maxTimeoutMs)
        let answer = try await gateway.call(block ? OutputRequest(id: taskID, wait: true, timeoutMs: timeout) : OutputRequest(id: taskID))
        let task = answer.task.json
        if answer.task.status.isTerminal {
            return ToolAnswer(TaskText.resultBlock(task, result: answer.result), tellsEndOf: [answer.task.id])
        }
        var lines = ["Task Status", "", TaskText.statusTable([task])]
        if let worktree = TaskText.worktree(task) { lines += ["", "Worktree: \(worktree)"] }
        if answer.timedOut {
            lines += ["", "Still running after waiting \(DurationText.format(milliseconds: timeout)). Call again to wait more, or go on with other work. \(DelegationTools.endPromise)"]
        }
        if let prompt = task["prompt"]?.stringValue { lines += ["", "Prompt:", prompt] }
        return ToolAnswer(lines.joined(separator: "\n"))
    }

    private func cancel(_ arguments: ToolArguments) async throws -> ToolAnswer {
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
        return ToolAnswer(text, tellsEndOf: answer.tasks.filter { $0.status.isTerminal }.map(\.id))
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
        let status = ending.ending.statusText
        let message = "Background task \(ending.taskID) (\(ending.watched.description), agent \(ending.watched.agent)) ended: \(status). "
            + "Use background_output with task_id \"\(ending.taskID)\" to read its result."
        var data: [String: Value] = [
            "message": .string(message), "task_id": .string(ending.taskID), "session_id": .string(ending.sessionID),
            "status": .string(ending.status.rawValue), "description": .string(ending.watched.description),
        ]
        if let reason = ending.reason { data["reason"] = .string(reason) }
        return .object(data)
    }
}

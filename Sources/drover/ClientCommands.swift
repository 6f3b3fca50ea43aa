import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire
import Glibc

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the supervisor daemon in the foreground (one per state folder).",
        discussion: "Listens on STATE/drover.sock (0600, own user only). SIGTERM or `drover shutdown` cancels running tasks and keeps pending ones for the next start."
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp(
        "Serve GET /metrics (Prometheus) over HTTP here: PORT (on 127.0.0.1), HOST:PORT or [IPv6]:PORT; port 0 picks a free one.",
        valueName: "address"))
    var metricsListen: String?

    func validate() throws {
        if let metricsListen {
            do { _ = try ListenAddress(parsing: metricsListen) } catch { throw ValidationError(error.description) }
        }
    }

    func run() throws {
        let supervision = startSupervising()
        let config = try common.loadSupervisingConfig()
        let state = StateFolder(explicit: common.stateDirectory, environment: ProcessEnvironment.current())
        let metricsAddress = metricsListen.flatMap { try? ListenAddress(parsing: $0) }  // checked in validate()
        let server: DaemonServer
        do {
            server = try DaemonServer(state: state, config: config, launch: defaultLaunch(), metricsListen: metricsAddress)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
        // stderr is daemon.log when autostarted: every line from here on has its time and level.
        DroverLog.stampLines()
        DroverLog.logger.info("serving \(state.path) (pid \(getpid())); \(supervision.summary)")
        if let address = server.metricsAddress { DroverLog.logger.info("metrics at http://\(address)/metrics") }
        let status = server.run()
        if status != 0 { throw ExitCode(status) }
    }
}

struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Queue a task and print its id.",
        discussion: "The prompt comes from --prompt, --prompt-file, or standard input."
    )

    @OptionGroup var client: ClientOptions
    @Option(help: "The agent to run (built in: explore, librarian, oracle; claude, opencode, codex).") var agent: String?
    @Option(help: "The prompt.") var prompt: String?
    @Option(name: .customLong("prompt-file"), help: "Read the prompt from this file.") var promptFile: String?
    @Option(help: "Short description shown in tables.") var description: String?
    @Option(help: "Provider (chooses the concurrency pool).") var provider: String?
    @Option(help: "Model (chooses the concurrency pool).") var model: String?
    @Option(help: "Time limit, e.g. 90s, 30m.") var ttl: String?
    @Option(help: "Continue this session (ses_...).") var session: String?
    @Option(help: "Working folder of the task.") var cwd: String?
    @Option(name: .customLong("env"), help: "K=V added to the task's environment (repeatable).") var env: [String] = []
    @Option(name: .customLong("after"), parsing: .upToNextOption,
            help: "Start only once these tasks (bg_...) have completed; if one does not, this task ends cancelled(dependency). {result:bg_...} in the prompt becomes that task's result.")
    var after: [String] = []
    @Option(parsing: .unconditional, help: "Within its pool a higher priority starts first (default 0, may be negative; equal priorities keep their order).") var priority: Int?
    @Flag(help: "Run in a git worktree of its own, on the branch drover/<task id> (see drover diff, apply, discard).") var worktree = false
    @Option(help: "With --worktree: the repository (default: the task's working folder).") var repo: String?
    @Option(help: "With --worktree: the commit, branch or tag the branch starts from (default HEAD now), or @bg_... for a dependency's branch (implies --after it).")
    var base: String?
    @Flag(name: .customLong("keep-worktree"), help: "With --worktree: keep the worktree folder after the end (the branch is always kept).") var keepWorktree = false
    @Flag(name: .customLong("no-commit"), help: "With --worktree: do not commit what the task left uncommitted.") var noCommit = false
    @Option(help: "Run the worker under bubblewrap: workdir (all read-only but its working folder and /tmp), readonly or none (the filesystem as it is); credentials and other tasks' files are hidden either way.")
    var sandbox: String?
    @Option(help: "With --sandbox: none (loopback only) or host (default).") var network: String?
    @Option(name: .customLong("set"),
            help: "NAME=VALUE: any per-task setting by its config name, e.g. staleTimeout=5m, maxToolCalls=40, retries=2, maxCostUsd=0.5 (repeatable; VALUE is JSON, or else a string).")
    var settings: [String] = []
    @Option(name: .customLong("limit"), help: "NAME=VALUE: a resource limit of the worker: cpuSeconds, memory (e.g. 2G), openFiles, processes, fileSize (repeatable).")
    var resourceLimits: [String] = []
    @Flag(help: "Wait for the task and print its result.") var wait = false

    func validate() throws {
        if let sandbox, SandboxSettings.Filesystem(rawValue: sandbox) == nil {
            throw ValidationError("--sandbox \(sandbox): expected workdir, readonly or none")
        }
        if let network {
            guard sandbox != nil else { throw ValidationError("--network needs --sandbox") }
            guard SandboxSettings.Network(rawValue: network) != nil else { throw ValidationError("--network \(network): expected none or host") }
        }
        if !worktree {
            let given = [("--repo", repo != nil), ("--base", base != nil), ("--keep-worktree", keepWorktree), ("--no-commit", noCommit)]
            if let flag = given.first(where: { $0.1 }) { throw ValidationError("\(flag.0) needs --worktree") }
        }
        if let base, base.hasPrefix("@"), !TaskIdentifiers.isTaskID(String(base.dropFirst())) {
            throw ValidationError("--base \(base): @ must be followed by a task id (bg_ and 8 hex digits)")
        }
        for id in after where !TaskIdentifiers.isTaskID(id) { throw ValidationError("--after \(id): expected a task id (bg_ and 8 hex digits)") }
        if let priority, !TaskRequest.priorityRange.contains(priority) {
            throw ValidationError("--priority \(priority): expected a whole number from \(TaskRequest.priorityRange.lowerBound) to \(TaskRequest.priorityRange.upperBound)")
        }
        if agent == nil { throw ValidationError("--agent is required (built in: explore, librarian, oracle; claude, opencode, codex)") }
        if prompt != nil && promptFile != nil { throw ValidationError("give --prompt or --prompt-file, not both") }
        _ = try parseDuration(ttl, flag: "--ttl")
        for entry in env where !entry.contains("=") { throw ValidationError("--env \(entry): expected NAME=value") }
        for entry in settings where !entry.contains("=") { throw ValidationError("--set \(entry): expected NAME=VALUE") }
        for entry in resourceLimits where !entry.contains("=") { throw ValidationError("--limit \(entry): expected NAME=VALUE") }
    }

    /// The request with --set and --limit applied, read back through the one reader of
    /// task requests, so a setting is checked here exactly as in a manifest row.
    func applyingSettings(to task: TaskRequest) throws -> TaskRequest {
        guard !settings.isEmpty || !resourceLimits.isEmpty else { return task }
        var object = LaunchRequest(task: task).members()
        for entry in settings {
            let (name, value) = Self.setting(entry)
            if name == "limits" || object[name] != nil {
                throw ValidationError("--set \(name): \(name == "limits" ? "use --limit NAME=VALUE" : "already given by its own flag")")
            }
            object[name] = value
        }
        var limits = object["limits"]?.objectValue ?? JSONObject()
        for entry in resourceLimits {
            let (name, value) = Self.setting(entry)
            guard limits[name] == nil else { throw ValidationError("--limit \(name): given twice") }
            limits[name] = value
        }
        if !limits.isEmpty { object["limits"] = .object(limits) }
        do {
            return try TaskRequest.decode(object, from: .launch)
        } catch {
            let flag = (error.field ?? "").hasPrefix("limits") ? "--limit" : "--set"
            Terminal.error("drover: \(flag): \(error.message)")
            throw ExitCode(2)
        }
    }

    /// NAME=VALUE, the value as JSON when it reads as JSON (40, true, ["crash"]), else as text.
    static func setting(_ entry: String) -> (String, JSONValue) {
        let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let text = parts.count > 1 ? String(parts[1]) : ""
        let value = (try? JSONParser.parse(text).value) ?? .string(text)
        return (String(parts[0]), value)
    }

    func run() throws {
        var text = prompt
        if let promptFile {
            do {
                text = String(decoding: try FileSystem.read(promptFile), as: UTF8.self)
            } catch {
                Terminal.error("drover: \(error)")
                throw ExitCode(2)
            }
        }
        if text == nil {
            guard !ProcessSetup.isTerminal(0) else { throw ValidationError("give --prompt, --prompt-file, or pipe the prompt on standard input") }
            text = String(decoding: (try? FileSystem.read("/dev/stdin")) ?? [], as: UTF8.self)
        }
        var task = TaskRequest(agent: agent ?? "", prompt: text ?? "", description: description)
        task.provider = provider
        task.model = model
        task.timers.taskTtl = try parseDuration(ttl, flag: "--ttl")
        task.sessionID = session
        task.after = after
        task.priority = priority ?? 0
        task.cwd = cwd.map(FileSystem.absolute)
        if worktree {
            task.workdir = .worktree
            task.worktree = WorktreeSettings(repo: repo.map(FileSystem.absolute), base: base, commit: noCommit ? false : nil,
                                             keepWorktree: keepWorktree ? true : nil)
            if let dependency = task.worktree.baseTask, !task.after.contains(dependency) { task.after.append(dependency) }
        }
        if let sandbox {
            task.sandbox = SandboxSettings(filesystem: SandboxSettings.Filesystem(rawValue: sandbox), network: network.flatMap(SandboxSettings.Network.init))
        }
        for entry in env {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            task.env[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        task = try applyingSettings(to: task)
        let answer = try client.call(LaunchRequest(task: task, client: client.context(agent: task.agent)))
        if wait { return try OutputCommand.waitAndPrint(id: answer.taskID, client: client, json: client.common.json, timeoutMs: nil) }
        if client.common.json {
            Terminal.out(JSONWriter.string(["task_id": .string(answer.taskID), "session_id": .string(answer.sessionID), "status": .string(answer.status.rawValue)]))
        } else {
            Terminal.out(answer.taskID)
        }
    }
}

struct RestartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Queue a task again: a new task with the same request as an ended one; print its id.",
        discussion: "The new task joins the same session (so an agent CLI resumes its conversation) unless --new-session."
    )

    @OptionGroup var client: ClientOptions
    @Argument(help: "The ended task (bg_...).") var id: String
    @Flag(name: .customLong("new-session"), help: "Start a new session instead of joining the task's.") var newSession = false
    @Flag(help: "Wait for the new task and print its result.") var wait = false

    func run() throws {
        let answer = try client.call(RestartRequest(id: id, newSession: newSession, client: client.context(agent: nil)))
        if wait { return try OutputCommand.waitAndPrint(id: answer.taskID, client: client, json: client.common.json, timeoutMs: nil) }
        if client.common.json {
            Terminal.out(JSONWriter.string(["task_id": .string(answer.taskID), "session_id": .string(answer.sessionID), "status": .string(answer.status.rawValue)]))
        } else {
            Terminal.out(answer.taskID)
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "A table of tasks, or tasks in detail.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Task ids (none: every task).") var ids: [String] = []
    @Option(name: .customLong("status"), help: "Only tasks in this status (repeatable): pending, running, completed, error, cancelled.")
    var statuses: [String] = []
    @Option(name: .customLong("agent"), help: "Only tasks of this agent (repeatable).") var agents: [String] = []
    @Option(help: "Only tasks created within this long, e.g. 10m, 2h.") var since: String?
    @Option(help: "Only the N newest tasks, newest first.") var limit: Int?

    func validate() throws {
        for status in statuses where TaskStatus(rawValue: status) == nil {
            throw ValidationError("--status \(status): expected one of \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let limit, limit < 1 { throw ValidationError("--limit \(limit): expected 1 or more") }
        _ = try parseDuration(since, flag: "--since")
        if !ids.isEmpty && (!statuses.isEmpty || !agents.isEmpty || since != nil || limit != nil) {
            throw ValidationError("give task ids or filters (--status, --agent, --since, --limit), not both")
        }
    }

    func run() throws {
        var request = StatusRequest(ids: ids)
        request.statuses = statuses.compactMap(TaskStatus.init)
        request.agents = agents
        request.sinceMs = try parseDuration(since, flag: "--since")
        request.limit = limit
        let tasks = try client.call(request).tasks.map(\.json)
        if client.common.json {
            Terminal.out(JSONWriter.string(.array(tasks.map { .object($0) })))
        } else if ids.isEmpty {
            Terminal.out(tasks.isEmpty ? "No background tasks." : TaskText.statusTable(tasks))
        } else {
            Terminal.out(tasks.map(TaskText.detail).joined(separator: "\n\n"))
        }
    }
}

struct OutputCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "output",
        abstract: "The result of a task if it is done, else its status (exit 3).")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task id.") var id: String
    @Flag(help: "Block until the task is done.") var wait = false
    @Option(help: "With --wait: give up after this long (exit 3).") var timeout: String?

    func validate() throws { _ = try parseDuration(timeout, flag: "--timeout") }

    func run() throws {
        if wait { return try Self.waitAndPrint(id: id, client: client, json: client.common.json, timeoutMs: try parseDuration(timeout, flag: "--timeout")) }
        try Self.print(try client.call(OutputRequest(id: id)), json: client.common.json)
    }

    static func waitAndPrint(id: String, client: ClientOptions, json: Bool, timeoutMs: Int?) throws {
        try print(try client.call(OutputRequest(id: id, wait: true, timeoutMs: timeoutMs)), json: json)
    }

    static func print(_ answer: OutputReply, json: Bool) throws {
        let task = answer.task.json
        if json {
            var document = task
            document["result"] = JSONValue(answer.result)
            Terminal.out(JSONWriter.string(.object(document)))
        } else if answer.timedOut || !answer.task.status.isTerminal {
            Terminal.out(TaskText.statusTable([task]))
            if let prompt = task["prompt"]?.stringValue { Terminal.out("\nPrompt:\n\(prompt)") }
        } else {
            Terminal.out(TaskText.resultBlock(task, result: answer.result))
        }
        let code = exitStatus(for: [answer.task.status])
        if code != 0 { throw ExitCode(code) }
    }
}

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel pending and running tasks; returns once their children are reaped.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Task ids.") var ids: [String] = []
    @Flag(help: "Every task that has not ended.") var all = false

    func validate() throws {
        if ids.isEmpty && !all { throw ValidationError("name the tasks to cancel, or give --all") }
        if !ids.isEmpty && all { throw ValidationError("give task ids or --all, not both") }
    }

    func run() throws {
        let answer = try client.call(CancelRequest(all ? .all : .ids(ids)))
        if client.common.json {
            var document = answer.frame()
            document["type"] = nil
            Terminal.out(JSONWriter.string(.object(document)))
        } else {
            Terminal.out(TaskText.cancelReport(answer) { "drover continue \($0) --prompt \"...\"" })
        }
        // The daemon answers once every task named has ended; one that has not is a surprise.
        if answer.tasks.contains(where: { !$0.status.isTerminal }) { throw ExitCode(3) }
    }
}

struct ContinueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "continue",
        abstract: "A new task in a session, or a follow-up prompt to its running task; prints the task id.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The session id (ses_...).") var session: String
    @Option(help: "The prompt.") var prompt: String
    @Flag(help: "Wait for the task and print its result.") var wait = false

    func run() throws {
        let answer = try client.call(ContinueRequest(session: session, prompt: prompt, client: client.context(agent: nil)))
        if wait { return try OutputCommand.waitAndPrint(id: answer.taskID, client: client, json: client.common.json, timeoutMs: nil) }
        if client.common.json {
            Terminal.out(JSONWriter.string(["task_id": .string(answer.taskID), "session_id": .string(answer.sessionID),
                                            "status": .string(answer.status.rawValue), "delivered": .bool(answer.delivered)]))
        } else {
            Terminal.out(answer.taskID)
        }
    }
}

struct WaitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wait", abstract: "Block until tasks are done; live progress on a terminal.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Task ids (none: every task that has not ended).") var ids: [String] = []
    @Flag(help: "Every task that has not ended yet (the default without ids).") var all = false
    @Option(help: "Give up after this long (exit 3).") var timeout: String?

    func validate() throws {
        if !ids.isEmpty && all { throw ValidationError("give task ids or --all, not both") }
        _ = try parseDuration(timeout, flag: "--timeout")
    }

    func run() throws {
        let request = WaitRequest(ids.isEmpty ? .all : .ids(ids), timeoutMs: try parseDuration(timeout, flag: "--timeout"))
        let live = ProcessSetup.isTerminal(2) && !client.common.json
        func line(_ n: WaitCounts) -> String {
            "\(Terminal.bar(done: n.done, total: n.total, width: 20)) \(n.done)/\(n.total) done · \(n.running) running · \(n.pending) pending · \(n.failed) failed"
        }
        try client.stream(request, closingIsError: true, onFailure: { if live { Terminal.clearLine(2) } }) { frame in
            switch frame {
            case .progress(let counts):
                if live { Terminal.redraw(2, line(counts)) }
                return false
            case .finished(let counts, let tasks, let timedOut):
                if live { Terminal.clearLine(2) }
                if client.common.json {
                    Terminal.out(JSONWriter.string(.object(frame.frame())))
                } else {
                    Terminal.out(line(counts) + (timedOut ? " (timed out)" : ""))
                }
                if timedOut { throw ExitCode(3) }
                let code = exitStatus(for: tasks.map(\.status))
                if code != 0 { throw ExitCode(code) }
                return true
            }
        }
    }
}

struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "A task's transcript as readable text.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task id.") var id: String
    @Flag(help: "Keep printing new lines until the task ends.") var follow = false

    func run() throws {
        try client.stream(LogsRequest(id: id, follow: follow)) { frame in
            guard case .lines(let text) = frame else { return true }
            for line in text.split(separator: "\n") {
                Terminal.out(client.common.json ? String(line) : TaskText.transcriptLine(line))
            }
            return false
        }
    }
}

struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "State changes as JSON lines; --follow streams them as they happen.",
        discussion: "Without --follow: every change so far (events.jsonl), then it exits. With --follow: only the changes from now on, and the start and end of each pool's cooldown; run `drover events` first for the history.")

    @OptionGroup var client: ClientOptions
    @Flag(help: "Stream the state changes from now on (no history), until interrupted.") var follow = false

    func run() throws {
        try client.stream(EventsRequest(follow: follow)) { frame in
            switch frame {
            case .end: return true
            case .lines(let text): Terminal.write(1, text)
            case .event(let event): Terminal.out(JSONWriter.string(.object(event.json)))
            case .pool(let event): Terminal.out(JSONWriter.string(.object(event.json)))
            case .following: break
            }
            return false
        }
    }
}

struct ShutdownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shutdown",
        abstract: "Stop the daemon: running tasks are cancelled, pending ones are kept for the next start.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        var options = client
        options.noAutostart = true
        let answer = try options.call(ShutdownRequest(), noDaemonHint: ": nothing to shut down")
        Terminal.out(client.common.json ? JSONWriter.string(.object(answer.frame())) : answer.message)
    }
}

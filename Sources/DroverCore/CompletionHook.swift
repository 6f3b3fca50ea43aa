import DroverWire

/// Runs the config's `onComplete` command for each task that ends: argv with placeholders,
/// no shell, its output discarded, never waited for on the loop.
public final class CompletionHook {
    private let loop: EventLoop
    private let launch: WorkerLaunch
    /// A reload may change them (none: the hook runs nothing); children already started
    /// are still reaped by this object.
    public var arguments: [String]
    private var running: [Int32: ChildProcess] = [:]
    /// Called when the last running command has exited (`drover run` waits for them).
    public var onIdle: () -> Void = {}

    /// No command is running.
    public var isIdle: Bool { running.isEmpty }

    public init(loop: EventLoop, launch: WorkerLaunch, arguments: [String]) {
        self.loop = loop
        self.launch = launch
        self.arguments = arguments
    }

    public func run(for task: TaskSnapshot) {
        let values: [String: String] = [
            "task_id": task.id, "session_id": task.sessionID, "agent": task.agent, "provider": task.provider ?? "",
            "model": task.model ?? "", "status": task.status.rawValue, "reason": task.reason?.rawValue ?? "",
            "result_path": task.resultPath ?? "", "description": task.description,
        ]
        let argv = arguments.map { Template.expand($0, values) }
        guard !argv.isEmpty else { return }
        guard let program = launch.locate(argv[0]) else {
            writeStandardError("drover: onComplete: cannot find \(argv[0])\n")
            return
        }
        let environment = launch.childEnvironment(
            passEnv: [], taskEnv: [:],
            taskVariables: ["DROVER_TASK_ID": task.id, "DROVER_SESSION_ID": task.sessionID, "DROVER_STATUS": task.status.rawValue])
        do {
            let child = try ChildProcess.spawn(loop: loop, spec: SpawnSpec(executable: program, arguments: argv, environment: environment))
            child.closeStdin()
            let pid = child.pid
            running[pid] = child
            child.onClosed = { [weak self] in
                guard let self else { return }
                self.running[pid] = nil
                if self.running.isEmpty { self.onIdle() }
            }
        } catch {
            writeStandardError("drover: onComplete: \(error)\n")
        }
    }
}

import Glibc

/// What one helper program (git, squeue, scancel) did.
public struct HelperResult: Sendable {
    public var status: Int
    public var output: [UInt8]
    public var errors: String

    public var succeeded: Bool { status == 0 }
    /// stdout as text without its trailing newline.
    public var text: String {
        var text = String(decoding: output, as: UTF8.self)
        while text.hasSuffix("\n") { text.removeLast() }
        return text
    }
    /// What git said on stderr (or stdout), for an error message.
    public var message: String {
        var said = errors.isEmpty ? text : errors
        while said.hasSuffix("\n") { said.removeLast() }
        return said.isEmpty ? "git exited with status \(status)" : said
    }
}

/// A program drover runs for itself (git, srun's companions squeue and scancel) as a child
/// process, without a shell: on a loop (the supervisor's, so the loop never waits for it) or
/// at once on a private loop of its own (the command line, recovery).
public struct HelperProgram: Sendable {
    public var program: String
    public var environment: [String]

    public init?(_ name: String, environment: [String: String], adding extra: [String: String] = [:]) {
        let launch = WorkerLaunch(programDirectories: [], environment: environment)
        guard let program = launch.locate(name) else { return nil }
        self.program = program
        var env = environment
        for (key, value) in extra { env[key] = value }
        self.environment = env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }

    /// Starts `PROGRAM ARGS` in `directory` on `loop`; `then` runs on the loop once it has ended.
    /// The child, or nil when it could not start (`then` has then run already).
    @discardableResult
    public func run(_ arguments: [String], in directory: String? = nil, extraEnvironment: [String] = [], loop: EventLoop,
                    then: @escaping (HelperResult) -> Void) -> ChildProcess?
    {
        let spec = SpawnSpec(executable: program, arguments: [FileSystem.basename(of: program)] + arguments,
                             environment: environment + extraEnvironment, workingDirectory: directory)
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(loop: loop, spec: spec)
        } catch {
            then(HelperResult(status: 127, output: [], errors: error.description))
            return nil
        }
        child.closeStdin()
        var output: [UInt8] = []
        var errors: [UInt8] = []
        var status = -1
        child.onStdout = { output.append(contentsOf: $0) }
        child.onStderr = { errors.append(contentsOf: $0) }
        child.onExit = { code, signal in status = signal != 0 ? 128 + Int(signal) : Int(code) }
        child.onClosed = { then(HelperResult(status: status, output: output, errors: String(decoding: errors, as: UTF8.self))) }
        return child
    }

    /// Runs `PROGRAM ARGS` in `directory` and waits for it; past `timeLimitMs` its process
    /// group is killed (status 137) and output still held open by an escaped descendant is
    /// given up.
    public func runNow(_ arguments: [String], in directory: String? = nil, extraEnvironment: [String] = [], timeLimitMs: Int? = nil) -> HelperResult {
        let loop = EventLoop()
        var result = HelperResult(status: -1, output: [], errors: "\(program) did not finish")
        // The timer goes before the loop it is on.
        withExtendedLifetime(loop) {
            let timer = LoopTimer(loop: loop)
            let child = run(arguments, in: directory, extraEnvironment: extraEnvironment, loop: loop) { ended in
                result = ended
                timer.stop()
            }
            if let timeLimitMs, let child {
                timer.start(after: timeLimitMs) {
                    child.signalGroup(SIGKILL)
                    child.abandonOutputs()
                }
            }
            loop.run()
        }
        return result
    }
}

/// git, for worktree tasks. Commands never prompt, and drover's own commits are made as `drover`.
public struct Git: Sendable {
    let helper: HelperProgram
    public var program: String { helper.program }

    /// The author and committer of the commits drover makes on a task's branch.
    public static let identity = ["GIT_AUTHOR_NAME=drover", "GIT_AUTHOR_EMAIL=drover@localhost",
                                  "GIT_COMMITTER_NAME=drover", "GIT_COMMITTER_EMAIL=drover@localhost"]

    public init?(environment: [String: String] = ProcessEnvironment.current()) {
        var env = environment
        // Messages are parsed (`--shortstat`) and quoted to users: the same words everywhere.
        env["LANGUAGE"] = nil
        guard let helper = HelperProgram("git", environment: env, adding: ["GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"]) else { return nil }
        self.helper = helper
    }

    static let notFound = "git not found on PATH"

    public func run(_ arguments: [String], in directory: String, extraEnvironment: [String] = [], loop: EventLoop,
                    then: @escaping (HelperResult) -> Void)
    {
        helper.run(arguments, in: directory, extraEnvironment: extraEnvironment, loop: loop, then: then)
    }

    public func runNow(_ arguments: [String], in directory: String, extraEnvironment: [String] = []) -> HelperResult {
        helper.runNow(arguments, in: directory, extraEnvironment: extraEnvironment)
    }
}

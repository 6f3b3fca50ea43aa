import DroverCore
import DroverDaemon
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A daemon (`drover serve`, autostarted by the real CLI) in a folder of its own, driven the
/// way a user drives it. Running the supervisor out of process lets the checks count its
/// descriptors and children without noise from the tests running beside this one.
final class FaultDaemon {
    let folder: String
    var state: String { folder + "/state" }
    var config: String { folder + "/config.jsonc" }
    /// A tmpfs mounted on the state folder, unmounted at the end.
    private(set) var mountedState = false
    /// The daemon's open descriptors once it was up and idle, before any task.
    private(set) var baselineFds = -1

    /// Whom the daemon and the commands run as (nil: this process's user).
    let user: String?

    /// `settings` are extra `background_task` members; `agents` extra agent entries.
    init(settings: String = "", agents: String = "", user: String? = nil) throws {
        folder = try temporaryFolder()
        self.user = user
        let text = """
            {
              "background_task": {
                "killGrace": "500ms", "minIdleTime": 0, "providerConcurrency": { "mock": 8 }
                \(settings.isEmpty ? "" : ", " + settings)
              },
              "agents": {
                "mock": { "command": ["drover-mock-agent"], "provider": "mock" }
                \(agents.isEmpty ? "" : ", " + agents)
              }
            }
            """
        try FileSystem.writeFile(config, Array(text.utf8))
        try FileSystem.makeDirectories(state)
        if let user {
            guard let entry = getpwnam(user) else { throw TestFailure("no user \(user)") }
            for path in [folder, state, config] { chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) }
        }
    }

    deinit {
        _ = try? run(["shutdown", "--no-autostart"])
        if let pid = pid, Processes.isAlive(pid) { kill(pid, SIGKILL) }
        if mountedState { umount2(state, Int32(MNT_DETACH)) }
        removeTree(folder)
    }

    /// Mounts a tmpfs of `size` on the state folder (before the daemon starts). False, with
    /// the reason, where mounting is impossible (not root, no CAP_SYS_ADMIN).
    func mountStateTmpfs(size: String) -> (Bool, String) {
        guard mount("tmpfs", state, "tmpfs", 0, "size=\(size),mode=0700") == 0 else {
            return (false, "cannot mount a tmpfs on \(state): \(String(cString: strerror(errno))) (the disk-full fault needs root)")
        }
        mountedState = true
        return (true, "")
    }

    /// Starts the daemon and records its idle descriptor count.
    func start() throws {
        _ = try ok(["status"])
        let pid = try #require(pid)
        // The client's connection closes on the daemon's side just after the answer.
        var last = -1
        var steady = 0
        eventually(withinMs: 2000) {
            let count = openDescriptors(of: pid)
            steady = count == last ? steady + 1 : 0
            last = count
            return steady >= 5
        }
        baselineFds = last
        #expect(baselineFds > 0, "cannot read /proc/\(pid)/fd")
        // What the daemon says of itself is what it is, seen from outside.
        #expect(try stats()["baseline_fds"]?.intValue == baselineFds, "the daemon's own baseline differs from its idle descriptors")
    }

    /// The current daemon's pid (it changes when a killed daemon is restarted).
    var pid: Int32? {
        Int32(readText(state + "/daemon.lock").split(separator: "\n").first ?? "")
    }

    // MARK: commands

    @discardableResult
    func run(_ arguments: [String]) throws -> CommandResult {
        try runDrover(arguments + ["--state-dir", state, "--config", config], in: folder, user: user)
    }

    /// A command that must succeed; its stdout without the last newline.
    func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try run(arguments)
        #expect(result.status == 0, "drover \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        return result.stdout.hasSuffix("\n") ? String(result.stdout.dropLast()) : result.stdout
    }

    func launch(_ prompt: String, agent: String = "mock", _ extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let id = try ok(["launch", "--agent", agent, "--prompt", prompt] + extra, sourceLocation: sourceLocation)
        #expect(TaskIdentifiers.isTaskID(id), "launch printed \(id)", sourceLocation: sourceLocation)
        return id
    }

    /// One request on the control socket (no autostart), and its single answer.
    func call(_ request: JSONObject) throws -> JSONObject {
        let client = try ControlClient.connect(state: StateFolder(explicit: state, environment: [:]), autostart: false)
        return try client.call(request)
    }

    /// `drover stats --json`, through the CLI so that it works whoever the daemon runs as.
    func stats() throws -> JSONObject { try parseObject(try ok(["stats", "--json", "--no-autostart"])) }

    // MARK: task files

    func task(_ id: String) throws -> JSONObject { try readJSON(state + "/tasks/\(id)/task.json") }

    func status(_ id: String) -> String { (try? task(id))?["status"]?.stringValue ?? "" }

    func isRunning(_ id: String) -> Bool { status(id) == "running" }

    /// Waits (bounded) until every one of `ids` is terminal, through `drover wait`.
    func waitEnded(_ ids: [String], timeout: String = "15s", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try run(["wait", "--timeout", timeout] + ids)
        #expect(result.status != 3, "tasks still open after \(timeout): \(ids.map { "\($0) \(status($0))" })", sourceLocation: sourceLocation)
    }
}

/// Open descriptors of another process, from /proc.
func openDescriptors(of pid: Int32) -> Int {
    FileSystem.list("/proc/\(pid)/fd").count
}

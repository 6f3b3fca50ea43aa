import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A temporary folder with a drover config whose agents are given as JSONC members of
/// `agents`, a state folder for the daemon and a results folder for `drover run`. The
/// daemon, if used, is shut down at the end.
final class RealAgentFixture {
    let folder: String
    var config: String { folder + "/config.jsonc" }
    var state: String { folder + "/state" }
    var results: String { folder + "/results" }
    /// A scratch HOME for the CLIs (their own settings, sessions and caches go there).
    var home: String { folder + "/home" }
    private var usedDaemon = false
    /// Processes of the test's own that may outlive a task: the fake APIs.
    var services: [pid_t] = []
    /// Objects that must live as long as the fixture (a fake API stops when released).
    var keptAlive: [AnyObject] = []

    init() throws {
        folder = try temporaryFolder()
        // A world-readable folder: the CLIs run as root here, but drover checks the state
        // folder's owner and mode, not its parent's.
        chmod(folder, 0o755)
        try FileSystem.makeDirectories(home)
    }

    /// Writes the config: `agents` is the inside of the "agents" object; `settings` the
    /// inside of "background_task".
    func writeConfig(agents: String, settings: String = "\"killGrace\": \"2s\", \"retries\": 0") throws {
        let text = """
            {
              "background_task": { \(settings) },
              "agents": { \(agents) }
            }
            """
        try FileSystem.writeFile(config, Array(text.utf8))
    }

    deinit {
        if usedDaemon {
            _ = try? runDrover(["shutdown", "--no-autostart", "--state-dir", state, "--config", config], in: folder)
        }
        removeTree(folder)
    }

    /// A JSON object's members, for an agent's `env`.
    static func envJSON(_ environment: [String: String]) -> String {
        var object = JSONObject()
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) { object[name] = .string(value) }
        return JSONWriter.string(.object(object))
    }

    // MARK: drover run

    /// Runs a manifest of (agent, prompt) rows; returns the command's outcome and each row's
    /// task.json by manifest line (1-based).
    func run(_ rows: [(agent: String, prompt: String)], extra: [String] = []) throws -> (CommandResult, [Int: JSONObject]) {
        var manifest: [UInt8] = []
        for row in rows {
            JSONWriter.writeObject(["agent": .string(row.agent), "prompt": .string(row.prompt)], into: &manifest)
            manifest.append(0x0A)
        }
        try FileSystem.writeFile(folder + "/tasks.jsonl", manifest)
        let result = try runDrover(["run", "tasks.jsonl", "--config", config, "--results", results] + extra, in: folder)
        var tasks: [Int: JSONObject] = [:]
        for id in FileSystem.list(results + "/tasks") {
            let task = try readJSON(results + "/tasks/\(id)/task.json")
            if let line = task["manifest_line"]?.intValue { tasks[line] = task }
        }
        return (result, tasks)
    }

    // MARK: the daemon

    @discardableResult
    func drover(_ arguments: [String]) throws -> CommandResult {
        usedDaemon = true
        return try runDrover(arguments + ["--state-dir", state, "--config", config], in: folder)
    }

    func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try drover(arguments)
        #expect(result.status == 0, "drover \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        return result.stdout.hasSuffix("\n") ? String(result.stdout.dropLast()) : result.stdout
    }

    func task(_ id: String, root: String? = nil) throws -> JSONObject {
        try readJSON((root ?? state) + "/tasks/\(id)/task.json")
    }

    func transcript(_ id: String, root: String? = nil) -> [JSONObject] {
        (try? readLines((root ?? state) + "/tasks/\(id)/transcript.jsonl")) ?? []
    }

    func resultText(_ id: String, root: String? = nil) -> String {
        readText((root ?? state) + "/tasks/\(id)/result.md")
    }

    /// No process whose command line mentions this fixture's folder is left (the CLIs, their
    /// tools and shells, the adapter), beyond the daemon and `services`.
    func expectNoProcessLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        let allowing = services
        let gone = eventually(withinMs: 5000) { processesMentioningFolder().allSatisfy { allowing.contains($0.pid) } }
        #expect(gone, "left behind: \(processesMentioningFolder().filter { !allowing.contains($0.pid) })", sourceLocation: sourceLocation)
    }

    /// Live (non-zombie) processes whose argv or environment names this fixture's folder.
    func processesMentioningFolder() -> [(pid: pid_t, command: String)] {
        var found: [(pid_t, String)] = []
        for name in FileSystem.list("/proc") {
            guard let pid = pid_t(name), pid != getpid(), Processes.isAlive(pid) else { continue }
            let argv = (try? FileSystem.read("/proc/\(pid)/cmdline")) ?? []
            let environment = (try? FileSystem.read("/proc/\(pid)/environ")) ?? []
            let marker = Array(folder.utf8)
            if contains(argv, marker) || contains(environment, marker) {
                let command = String(decoding: argv.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                if !command.contains("drover serve") { found.append((pid, command)) }
            }
        }
        return found
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { start in
            haystack[start] == needle[0] && Array(haystack[start..<(start + needle.count)]) == needle
        }
    }
}

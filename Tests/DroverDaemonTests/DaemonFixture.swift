import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A state folder and config for one test, driven through the real `drover` executable.
/// The daemon is autostarted by the first command and shut down at the end.
final class DaemonFixture {
    let folder: String
    var state: String { folder + "/state" }
    var config: String { folder + "/config.jsonc" }

    init(settings: String = "", agents: String = "") throws {
        folder = try temporaryFolder()
        let text = """
            {
              "background_task": { "killGrace": "500ms", "minIdleTime": 0 \(settings.isEmpty ? "" : ", " + settings) },
              "agents": { \(agents) }
            }
            """
        try FileSystem.writeFile(config, Array(text.utf8))
    }

    deinit {
        _ = try? run(["shutdown", "--no-autostart"])
        if let pid = daemonPid, Processes.isAlive(pid) { kill(pid, SIGKILL) }
        removeTree(folder)
    }

    /// `drover ARGS --state-dir STATE --config CONFIG`.
    @discardableResult
    func run(_ arguments: [String], user: String? = nil) throws -> CommandResult {
        try runDrover(arguments + ["--state-dir", state, "--config", config], in: folder, user: user)
    }

    /// Runs a command that must succeed and returns its stdout without the last newline.
    func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try run(arguments)
        #expect(result.status == 0, "drover \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        return result.stdout.hasSuffix("\n") ? String(result.stdout.dropLast()) : result.stdout
    }

    func launch(_ prompt: String, agent: String = "explore", _ extra: [String] = []) throws -> String {
        try ok(["launch", "--agent", agent, "--prompt", prompt] + extra)
    }

    func task(_ id: String) throws -> JSONObject { try readJSON(state + "/tasks/\(id)/task.json") }

    func status(_ id: String) throws -> String { try task(id)["status"]?.stringValue ?? "" }

    var daemonPid: Int32? {
        Int32(readText(state + "/daemon.lock").split(separator: "\n").first ?? "")
    }
}

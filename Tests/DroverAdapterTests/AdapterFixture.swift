import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A folder with a config whose agents run `drover-adapter` against the stand-in CLI:
/// `fake-claude`, `fake-opencode` and `fake-codex`. The stand-in logs each run (argv, cwd,
/// prompt, pids) to `cli.log`. Used through `drover run` and through the daemon. In
/// `extraAgents`, `{cli_log}` and `{stand_in}` stand for that log and the stand-in CLI.
final class AdapterFixture {
    let folder: String
    var config: String { folder + "/config.jsonc" }
    var state: String { folder + "/state" }
    var results: String { folder + "/results" }
    var cliLog: String { folder + "/cli.log" }
    private var usedDaemon = false

    init(heartbeat: String = "100ms", extraAgents: String = "") throws {
        folder = try temporaryFolder()
        func agent(_ cli: String, provider: String) -> String {
            """
            "fake-\(cli)": {
              "command": ["drover-adapter", "\(cli)", "--program", "\(Recorded.standIn)", "--heartbeat", "\(heartbeat)", "--grace", "300ms", "--linger", "1s"],
              "provider": "\(provider)", "env": { "FAKE_CLI_LOG": "\(cliLog)" }, "stablePolls": 0
            }
            """
        }
        let text = """
            {
              "background_task": { "killGrace": "1500ms", "minIdleTime": 0, "retries": 0 },  // one attempt: what the adapter says
              "agents": {
                \(agent("claude", provider: "anthropic")),
                \(agent("opencode", provider: "opencode")),
                \(agent("codex", provider: "openai"))
                \(extraAgents.isEmpty ? "" : ", " + extraAgents.replacing("{cli_log}", with: cliLog).replacing("{stand_in}", with: Recorded.standIn))
              }
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

    // MARK: drover run

    /// Runs a manifest of (agent, prompt) rows; returns the command's outcome and each row's
    /// task.json by manifest line (1-based).
    func run(_ rows: [(agent: String, prompt: String)]) throws -> (CommandResult, [Int: JSONObject]) {
        var manifest: [UInt8] = []
        for row in rows {
            JSONWriter.writeObject(["agent": .string(row.agent), "prompt": .string(row.prompt)], into: &manifest)
            manifest.append(0x0A)
        }
        try FileSystem.writeFile(folder + "/tasks.jsonl", manifest)
        let result = try runDrover(["run", "tasks.jsonl", "--config", config, "--results", results], in: folder)
        var tasks: [Int: JSONObject] = [:]
        for id in FileSystem.list(results + "/tasks") {
            let task = try readJSON(results + "/tasks/\(id)/task.json")
            if let line = task["manifest_line"]?.intValue { tasks[line] = task }
        }
        return (result, tasks)
    }

    func transcript(_ task: JSONObject, root: String? = nil) throws -> [JSONObject] {
        try readLines((root ?? results) + "/tasks/\(task["id"]?.stringValue ?? "?")/transcript.jsonl")
    }

    func resultText(_ task: JSONObject, root: String? = nil) -> String {
        readText((root ?? results) + "/tasks/\(task["id"]?.stringValue ?? "?")/result.md")
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

    func task(_ id: String) throws -> JSONObject { try readJSON(state + "/tasks/\(id)/task.json") }

    // MARK: what the stand-in saw

    /// One JSON object per run of the stand-in CLI, in order.
    func cliRuns() -> [JSONObject] {
        readText(cliLog).split(separator: "\n").compactMap { try? parseObject(String($0)) }
    }

    /// Workers, CLIs and their grandchildren are all gone (reaped, not zombies).
    func expectNothingLeft(_ tasks: [JSONObject], sourceLocation: SourceLocation = #_sourceLocation) {
        var pids: [Int32] = tasks.compactMap { $0["pid"]?.intValue.map { Int32($0) } }
        for run in cliRuns() {
            for key in ["pid", "grandchild"] { if let pid = run[key]?.intValue { pids.append(Int32(pid)) } }
        }
        for pid in pids {
            #expect(eventually(withinMs: 3000) { !Processes.isAlive(pid) }, "process \(pid) is still running", sourceLocation: sourceLocation)
        }
    }
}

extension JSONObject {
    var status: String? { self["status"]?.stringValue }
    var reason: String? { self["reason"]?.stringValue }
    var errorText: String { self["error"]?.stringValue ?? "" }
    var resultData: JSONObject? { self["result_data"]?.objectValue }
}

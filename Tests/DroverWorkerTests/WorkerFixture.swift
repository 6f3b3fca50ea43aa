import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Where the Python workers live: this file is Tests/DroverWorkerTests/WorkerFixture.swift.
enum PythonWorkers {
    static let repository: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static let folder = repository + "/workers/python"
    static let example = folder + "/examples/word_count.py"
    static let modelAPI = folder + "/drover_model_api.py"
    static let fakeServer = folder + "/tests/fake_model_server.py"
}

/// A child of the test with stdout and stderr in files and a clean signal mask, ended only
/// through its pid.
final class ChildProcess {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private var status: Int32?

    init(_ command: [String], stdout: String, stderr: String, in folder: String? = nil) throws {
        let pid = try spawnChild(["/usr/bin/env"] + command, output: .file(stdout), stderr: stderr, in: folder)
        self.pid = pid
        stdoutPath = stdout
        stderrPath = stderr
    }

    /// Waits up to `ms` for the exit; nil if it is still running.
    func wait(withinMs ms: Int) -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        var waited = 0
        while true {
            let rc = waitpid(pid, &raw, WNOHANG)
            if rc == pid {
                status = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
                return status
            }
            if waited >= ms { return nil }
            usleep(10_000)
            waited += 10
        }
    }

    /// SIGKILL, then reaps it.
    func stop() {
        guard status == nil else { return }
        kill(pid, SIGKILL)
        _ = wait(withinMs: 5_000)
    }
}

/// fake_model_server.py, started on a free port of 127.0.0.1 and stopped by `stop()`.
final class FakeModelServer {
    let process: ChildProcess
    let port: Int
    let logPath: String

    init(folder: String, key: String?) throws {
        logPath = folder + "/requests.jsonl"
        process = try ChildProcess(
            ["python3", PythonWorkers.fakeServer, "--log", logPath] + (key.map { ["--key", $0] } ?? []),
            stdout: folder + "/server.out", stderr: folder + "/server.err")
        let out = folder + "/server.out"
        guard eventually(withinMs: 10_000, { readText(out).hasSuffix("\n") }), let port = Int(readText(out).split(separator: "\n").first ?? "") else {
            process.stop()
            throw TestFailure("the fake model server did not print its port: \(readText(folder + "/server.err"))")
        }
        self.port = port
    }

    func baseURL(_ api: String) -> String { "http://127.0.0.1:\(port)" + (api == "openai" ? "/v1" : "") }

    func requests() throws -> [JSONObject] { try readLines(logPath) }

    func requests(model: String, api: String) throws -> [JSONObject] {
        try requests().filter { $0["model"]?.stringValue == model && $0["api"]?.stringValue == api }
    }

    /// Stops the server and checks it is gone.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        process.stop()
        #expect(!Processes.exists(process.pid), "the fake model server \(process.pid) is still there", sourceLocation: sourceLocation)
    }
}

/// One `drover run` of a manifest under a config, in a temporary folder.
struct BatchOutcome {
    let command: CommandResult
    let results: String
    /// task.json of each manifest line, in order.
    let tasks: [JSONObject]

    func task(_ line: Int) -> JSONObject { tasks[line - 1] }

    func folder(_ line: Int) -> String { results + "/tasks/" + (task(line)["id"]?.stringValue ?? "?") }

    func transcript(_ line: Int) throws -> [JSONObject] { try readLines(folder(line) + "/transcript.jsonl") }

    func result(_ line: Int) -> String { readText(folder(line) + "/result.md") }

    func stderr(_ line: Int) -> String { readText(folder(line) + "/stderr.log") }

    /// Texts of the assistant `message` frames the worker sent.
    func assistantMessages(_ line: Int) throws -> [String] {
        try transcript(line).filter { $0["dir"] == "in" && $0["type"] == "message" && $0["role"] == "assistant" }.compactMap { $0["text"]?.stringValue }
    }

    /// Every worker has exited and left nothing in its process group.
    func expectNoWorkerLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        for task in tasks {
            guard let pid = task["pid"]?.intValue.map({ Int32($0) }) else { continue }
            #expect(!Processes.isAlive(pid), "worker \(pid) of \(task["id"]?.stringValue ?? "?") still runs", sourceLocation: sourceLocation)
            #expect(Processes.liveMembers(ofGroup: pid).isEmpty, "process group \(pid) still has members", sourceLocation: sourceLocation)
        }
    }
}

/// Writes `config` and `manifest` into `folder` and runs `drover run` on them.
func runBatch(in folder: String, config: String, manifest: [String], environment: [String] = []) throws -> BatchOutcome {
    try FileSystem.writeFile(folder + "/config.jsonc", Array(config.utf8))
    try FileSystem.writeFile(folder + "/tasks.jsonl", Array((manifest.joined(separator: "\n") + "\n").utf8))
    let results = folder + "/results"
    let command = try runDrover(["run", "tasks.jsonl", "--results", results, "--config", folder + "/config.jsonc"], in: folder, environment: environment)
    guard let rows = try? readJSON(results + "/summary.json")["tasks"]?.arrayValue else {
        throw TestFailure("drover run wrote no summary (exit \(command.status)): \(command.stderr)")
    }
    var tasks: [JSONObject] = []
    for row in rows.compactMap(\.objectValue).sorted(by: { ($0["line"]?.intValue ?? 0) < ($1["line"]?.intValue ?? 0) }) {
        tasks.append(try readJSON(results + "/tasks/" + (row["task_id"]?.stringValue ?? "?") + "/task.json"))
    }
    return BatchOutcome(command: command, results: results, tasks: tasks)
}

/// A JSON string literal of `text`, for building configs and manifests.
func jsonString(_ text: String) -> String {
    var bytes: [UInt8] = []
    JSONWriter.write(.string(text), into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

/// An agent entry that runs `command`; `extra` adds members (e.g. `"passEnv": [...]`).
func agent(_ name: String, _ command: [String], provider: String, model: String? = nil, extra: String = "") -> String {
    var members = ["\"command\": [\(command.map(jsonString).joined(separator: ", "))]", "\"provider\": \(jsonString(provider))"]
    if let model { members.append("\"model\": \(jsonString(model))") }
    if !extra.isEmpty { members.append(extra) }
    return "\(jsonString(name)): { \(members.joined(separator: ", ")) }"
}

func config(agents: [String], settings: String = "") -> String {
    """
    {
      "background_task": { "killGrace": "500ms", "minIdleTime": 0\(settings.isEmpty ? "" : ", " + settings) },
      "agents": { \(agents.joined(separator: ",\n    ")) }
    }
    """
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
func closedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
        }
    }
    guard bound else { throw TestFailure("bind: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

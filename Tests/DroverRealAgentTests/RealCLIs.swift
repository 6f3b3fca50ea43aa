import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The real agent CLIs, as scripts/fetch-agent-clis.sh leaves them in its cache folder
/// (`DROVER_AGENT_CLI_CACHE`, else ~/.cache/drover/agent-clis). A missing binary fails the
/// test with what to run: these tests never skip.
enum RealCLIs {
    static let claudeVersion = "2.1.332"
    static let codexAppServerVersion = "0.159.2"

    static let repository: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static let fakes = repository + "/Tests/DroverRealAgentTests/Fakes"

    static var cache: String {
        let environment = ProcessEnvironment.current()
        if let cache = environment["DROVER_AGENT_CLI_CACHE"], !cache.isEmpty { return cache }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? "/root") + "/.cache")
        return base + "/drover/agent-clis"
    }

    static func claude() throws -> String { try binary("claude", claudeVersion) }
    static func codexAppServer() throws -> String { try binary("codex-app-server", codexAppServerVersion) }

    private static func binary(_ name: String, _ version: String) throws -> String {
        let path = "\(cache)/\(name)-\(version)/\(name)"
        guard access(path, X_OK) == 0 else {
            throw TestFailure("the real \(name) \(version) is not at \(path): run scripts/fetch-agent-clis.sh first (it downloads it from PyPI)")
        }
        return path
    }
}

/// fake_anthropic.py on a free port of 127.0.0.1, answering by the rules of `script`.
final class FakeAnthropic {
    let pid: pid_t
    let port: Int
    let logPath: String
    private let folder: String
    private var stopped = false

    /// `script`: the rules, a JSON array (see fake_anthropic.py).
    init(folder: String, script: String) throws {
        self.folder = folder
        logPath = folder + "/anthropic-requests.jsonl"
        let scriptPath = folder + "/anthropic-script.json"
        try FileSystem.writeFile(scriptPath, Array(script.utf8))
        let out = folder + "/anthropic.out"
        pid = try spawnChild(
            ["/usr/bin/env", "python3", RealCLIs.fakes + "/fake_anthropic.py", "--script", scriptPath, "--log", logPath],
            output: .file(out), stderr: folder + "/anthropic.err")
        guard eventually(withinMs: 10_000, { readText(out).hasSuffix("\n") }), let port = Int(readText(out).split(separator: "\n").first ?? "") else {
            kill(pid, SIGKILL)
            _ = waitForExit(pid)
            throw TestFailure("the fake Anthropic API did not print its port: \(readText(folder + "/anthropic.err"))")
        }
        self.port = port
    }

    deinit { stop() }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Every request so far, in order.
    func requests() -> [JSONObject] { (try? readLines(logPath)) ?? [] }

    /// The text of every user message the model was sent in request `index`, joined.
    func userText(ofRequest request: JSONObject) -> String {
        let messages = request["body"]?.objectValue?["messages"]?.arrayValue ?? []
        return messages.compactMap(\.objectValue).filter { $0["role"]?.stringValue == "user" }
            .map { JSONWriter.string($0["content"] ?? .null) }.joined(separator: "\n")
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGKILL)
        _ = waitForExit(pid)
    }
}

/// The environment the real Claude Code runs with in these tests: a scratch HOME, the fake
/// API, and nothing that calls out (telemetry, updates, error reports).
func claudeEnvironment(home: String, api: FakeAnthropic) -> [String: String] {
    [
        "HOME": home, "ANTHROPIC_BASE_URL": api.baseURL, "ANTHROPIC_API_KEY": "sk-fake",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
    ]
}

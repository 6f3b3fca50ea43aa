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

/// One of the fake APIs of Fakes/ (fake_anthropic.py, fake_responses.py) on a free port of
/// 127.0.0.1, answering by the rules of its script and logging every request; killed when
/// released.
class FakeAPI {
    let pid: pid_t
    let port: Int
    let logPath: String
    private var stopped = false

    /// `name`: the fake (`anthropic` runs fake_anthropic.py); `script`: its rules, a JSON array.
    init(_ name: String, folder: String, script: String) throws {
        logPath = folder + "/\(name)-requests.jsonl"
        let scriptPath = folder + "/\(name)-script.json"
        try FileSystem.writeFile(scriptPath, Array(script.utf8))
        let out = folder + "/\(name).out"
        pid = try spawnChild(
            ["/usr/bin/env", "python3", RealCLIs.fakes + "/fake_\(name).py", "--script", scriptPath, "--log", logPath],
            output: .file(out), stderr: folder + "/\(name).err")
        guard eventually(withinMs: 10_000, { readText(out).hasSuffix("\n") }), let port = Int(readText(out).split(separator: "\n").first ?? "") else {
            kill(pid, SIGKILL)
            _ = waitForExit(pid)
            throw TestFailure("the fake \(name) API did not print its port: \(readText(folder + "/\(name).err"))")
        }
        self.port = port
    }

    deinit { stop() }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Every request so far, in order.
    func requests() -> [JSONObject] { (try? readLines(logPath)) ?? [] }

    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGKILL)
        _ = waitForExit(pid)
    }
}

/// The fake Anthropic Messages API (fake_anthropic.py).
final class FakeAnthropic: FakeAPI {
    init(folder: String, script: String) throws { try super.init("anthropic", folder: folder, script: script) }

    /// The text of every user message the model was sent in a request, joined.
    func userText(ofRequest request: JSONObject) -> String {
        let messages = request["body"]?.objectValue?["messages"]?.arrayValue ?? []
        return messages.compactMap(\.objectValue).filter { $0["role"]?.stringValue == "user" }
            .map { JSONWriter.string($0["content"] ?? .null) }.joined(separator: "\n")
    }
}

/// The fake OpenAI Responses API (fake_responses.py).
final class FakeResponses: FakeAPI {
    init(folder: String, script: String) throws { try super.init("responses", folder: folder, script: script) }
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

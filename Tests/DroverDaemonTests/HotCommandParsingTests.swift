import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// status, launch, output, cancel and wait parse plain arguments without swift-argument-parser's
/// command tree; DROVER_FULL_PARSE=1 makes the same binary use the tree for everything. The
/// two must give the same exit status, stdout and stderr for any argument list.
@Suite struct HotCommandParsingTests {
    /// Runs `drover COMMAND --state-dir S --config C ARGS` both ways; returns the fast path's result.
    @discardableResult
    func agree(_ d: DaemonFixture, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
        // The folder options right after the command's name, so that none of the lists (`--`
        // included) can send a command to the default state folder.
        let folders = ["--state-dir", d.state, "--config", d.config]
        let full = arguments.first?.hasPrefix("-") ?? true ? arguments : [arguments[0]] + folders + arguments.dropFirst()
        // A command that missed the options would use (and the end checks) this folder.
        let home = "DROVER_HOME=" + d.folder + "/default-home"
        let fast = try runDrover(full, in: d.folder, environment: [home])
        let tree = try runDrover(full, in: d.folder, environment: [home, "DROVER_FULL_PARSE=1"])
        let shown = "drover " + arguments.joined(separator: " ")
        #expect(fast.status == tree.status, "\(shown): exit \(fast.status) vs \(tree.status) (\(fast.stderr) / \(tree.stderr))",
                sourceLocation: sourceLocation)
        #expect(fast.stdout == tree.stdout, "\(shown): stdout\n\(fast.stdout)\nvs\n\(tree.stdout)", sourceLocation: sourceLocation)
        #expect(fast.stderr == tree.stderr, "\(shown): stderr\n\(fast.stderr)\nvs\n\(tree.stderr)", sourceLocation: sourceLocation)
        return fast
    }

    @Test func readingCommandsAgreeWithTheFullParser() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result one")
        let second = try d.launch("@result two", agent: "oracle")
        _ = try d.ok(["wait", first, second, "--timeout", "20s"])
        // Help, usage errors (exit 2) and successes, in the forms the fast path takes and in
        // those it leaves to the tree.
        let lists: [[String]] = [
            ["status"], ["status", "--json"], ["status", first], ["status", first, second, "--json"],
            ["status", "--status", "completed", "--limit", "1"], ["status", "--status=completed", "--agent", "oracle"],
            ["status", "--agent=explore", "--agent", "oracle", "--since", "1h"], ["status", "--no-autostart"],
            ["status", "--limit", "0"], ["status", "--limit", "x"], ["status", "--limit=-1"], ["status", "--status", "done"],
            ["status", first, "--limit", "1"], ["status", "--bogus"], ["status", "-x"], ["status", "--json", "--json"],
            ["status", "--json=yes"], ["status", "--since"], ["status", "--help"], ["status", "-h"], ["status", "help"],
            ["status", "--", first], ["status", ""],
            ["output", first], ["output", second, "--json"], ["output"], ["output", first, second], ["output", "bg_00000000"],
            ["output", first, "--wait", "--timeout", "5s"], ["output", "--timeout", "soon", first], ["output", "--help"],
            ["cancel"], ["cancel", "--all", first], ["cancel", "--all"], ["cancel", first, "--json"], ["cancel", "--help"],
            ["wait", first], ["wait", first, "--all"], ["wait", "--timeout", "x"], ["wait", first, second, "--json"],
            ["wait", "--all", "--timeout", "5s"], ["wait", "--help"],
            ["launch", "--help"], ["launch", "--bogus"], ["launch", "--prompt", "x"], ["launch", "--agent", "explore", "stray"],
            ["launch", "--agent", "explore", "--prompt", "x", "--prompt-file", "/nonexistent"],
            ["launch", "--agent", "explore", "--prompt", "x", "--network", "none"],
            ["launch", "--agent", "explore", "--prompt", "x", "--priority", "many"],
            ["launch", "--agent", "explore", "--prompt", "x", "--priority", "2000000"],
            ["launch", "--agent", "explore", "--prompt", "x", "--set", "bogus"],
            ["launch", "--agent", "explore", "--prompt", "x", "--set", "noSuchSetting=1"],
            ["launch", "--agent", "explore", "--prompt", "x", "--limit", "memory=lots"],
            ["launch", "--agent", "explore", "--prompt", "x", "--worktree=yes"],
            ["launch", "--agent", "explore", "--prompt", "x", "--repo", "."],
            ["launch", "--agent", "explore", "--prompt", "x", "--after", "bg_zz"],
            ["launch", "--agent", "explore", "--prompt", "x", "--ttl", "forever"],
            ["launch", "--agent", "explore", "--prompt", "--json"],
            ["--version"],
        ]
        for arguments in lists { try agree(d, arguments) }
        // The argument lists ran against a real daemon: the successes are successes.
        #expect(try agree(d, ["status", first, "--json"]).stdout.contains("\"completed\""))
        #expect(try agree(d, ["launch", "--help"]).stdout.contains("USAGE: drover launch"))
        #expect(try agree(d, ["launch", "--bogus"]).status == 2)
        #expect(!FileSystem.exists(d.folder + "/default-home"), "a command ran against the default state folder")
    }

    /// A launch parsed either way queues the same request.
    @Test func launchesQueueTheSameRequestEitherWay() throws {
        let d = try DaemonFixture()
        let arguments = [
            "launch", "--agent", "oracle", "--prompt", "@result same", "--description", "both ways", "--provider", "mock",
            "--model", "m1", "--ttl", "90s", "--env", "A=1", "--env=B=2", "--priority=-3",
            "--set", "retries=2", "--limit", "cpuSeconds=30", "--json",
            "--state-dir", d.state, "--config", d.config,
        ]
        let fast = try runDrover(arguments, in: d.folder)
        let tree = try runDrover(arguments, in: d.folder, environment: ["DROVER_FULL_PARSE=1"])
        #expect(fast.status == tree.status && fast.stderr == tree.stderr, "\(fast.stderr) / \(tree.stderr)")
        let ids = [fast, tree].compactMap { try? JSONParser.parse($0.stdout).value.objectValue?["task_id"]?.stringValue }
        try #require(ids.count == 2, "\(fast.stdout) / \(tree.stdout)")
        _ = try d.ok(["wait"] + ids + ["--timeout", "20s"])
        let recorded = try ids.map { id in
            let task = try d.task(id)
            return ["request", "prompt", "description", "agent", "provider", "model", "ttl_ms", "status"].map { task[$0] ?? .null }
        }
        #expect(recorded[0] == recorded[1], "\(recorded)")
        #expect(recorded[0][0] != .null)
    }
}

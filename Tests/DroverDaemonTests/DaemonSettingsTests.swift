import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The daemon's settings (section "The daemon's settings" of the README): a client naming
/// another config is refused until `drover reload`, SIGHUP re-reads the daemon's own file,
/// passEnv values come from the launching client, and `launch --set/--limit`.
@Suite struct DaemonSettingsTests {
    static let echoer = #""echoer": { "command": ["drover-mock-agent"], "provider": "mock" }"#

    func write(_ path: String, _ text: String) throws { try FileSystem.writeFile(path, Array(text.utf8)) }

    @Test func anotherConfigIsRefusedUntilTheDaemonReloadsIt() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result one")
        _ = try d.ok(["wait", first, "--timeout", "20s"])
        let other = d.folder + "/other.jsonc"
        try write(other, "{ \"agents\": { \(Self.echoer) } }")
        func launch(config: String, agent: String) throws -> CommandResult {
            try runDrover(["launch", "--state-dir", d.state, "--config", config, "--agent", agent, "--prompt", "@result hi"], in: d.folder)
        }

        let refused = try launch(config: other, agent: "echoer")
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.contains(other) && refused.stderr.contains(d.config) && refused.stderr.contains("drover reload --config \(other)"),
                "names both files and the way out: \(refused.stderr)")
        // What does not start tasks is not refused.
        #expect(try runDrover(["status", "--state-dir", d.state, "--config", other], in: d.folder).status == 0)

        let reloaded = try runDrover(["reload", "--state-dir", d.state, "--config", other], in: d.folder)
        #expect(reloaded.status == 0 && reloaded.stdout.contains(other), "\(reloaded.stderr)")
        let echo = try launch(config: other, agent: "echoer")
        #expect(echo.status == 0, "\(echo.stderr)")
        let id = echo.stdout.trimmingSuffix("\n")
        #expect(try runDrover(["wait", id, "--state-dir", d.state, "--config", other, "--timeout", "20s"], in: d.folder).status == 0)
        #expect(try launch(config: d.config, agent: "explore").status == 2, "the first config is another file now")

        // The same file, changed since it was loaded.
        try write(other, "{ \"background_task\": { \"defaultConcurrency\": 2 }, \"agents\": { \(Self.echoer) } }")
        let changed = try launch(config: other, agent: "echoer")
        #expect(changed.status == 2 && changed.stderr.contains("has changed since the daemon loaded it"), "\(changed.stderr)")

        // A config that does not load is refused and the old one kept.
        let broken = d.folder + "/broken.jsonc"
        try write(broken, "{ \"background_task\": { \"defaultConcurrency\": \"many\" } }")
        let refusedReload = try runDrover(["reload", "--state-dir", d.state, "--config", broken], in: d.folder)
        #expect(refusedReload.status == 2 && refusedReload.stderr.contains("broken.jsonc:1"), "\(refusedReload.stderr)")
        #expect(try runDrover(["reload", "--state-dir", d.state, "--config", other], in: d.folder).status == 0)
        #expect(try launch(config: other, agent: "echoer").status == 0, "the edited file once reloaded")
    }

    @Test func newLimitsApplyFromTheNextGrantAndSighupRereadsTheFile() throws {
        let d = try DaemonFixture(settings: #""defaultConcurrency": 1"#)
        let ids = try (0..<3).map { _ in try d.launch("@hang") }
        func running() throws -> Int {
            let rows = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []
            return rows.filter { $0.objectValue?["status"]?.stringValue == "running" }.count
        }
        #expect(eventually { (try? running()) == 1 })
        try write(d.config, #"{ "background_task": { "killGrace": "500ms", "minIdleTime": 0, "defaultConcurrency": 3 } }"#)
        _ = try d.ok(["reload"])
        #expect(eventually { (try? running()) == 3 }, "the waiting tasks got the new slots")

        // SIGHUP: the daemon reads its own file again; the running keep their slots.
        try write(d.config, #"{ "background_task": { "killGrace": "500ms", "minIdleTime": 0, "defaultConcurrency": 2 } }"#)
        let pid = try #require(d.daemonPid)
        kill(pid, SIGHUP)
        #expect(eventually { readText(d.state + "/daemon.log").contains("config reloaded: \(d.config)") })
        let fourth = try d.launch("@hang")
        let shown = try d.task(fourth)
        #expect(shown["status"]?.stringValue == "pending", "3 run under a limit of 2 now: \(shown)")
        #expect(try running() == 3)
        _ = try d.ok(["cancel", "--all"])
        for id in ids + [fourth] { #expect(eventually { (try? d.status(id)) == "cancelled" }) }
    }

    @Test func passEnvValuesComeFromTheLaunchingClient() throws {
        let d = try DaemonFixture(agents: #""passer": { "command": ["drover-mock-agent"], "provider": "mock", "passEnv": ["PASS_TEST_KEY"] }"#)
        _ = try d.ok(["status"])  // the daemon starts without the variable
        let secret = "from-the-client-\(getpid())"
        let given = try runDrover(["launch", "--state-dir", d.state, "--config", d.config, "--agent", "passer", "--wait",
                                   "--prompt", "@echo-env PASS_TEST_KEY\n@result done"],
                                  in: d.folder, environment: ["PASS_TEST_KEY=\(secret)"])
        #expect(given.status == 0, "\(given.stderr)")
        let unset = try d.launch("@echo-env PASS_TEST_KEY\n@result done", agent: "passer")
        _ = try d.ok(["wait", unset, "--timeout", "20s"])
        let tasks = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []
        let first = try #require(tasks.first?.objectValue?["id"]?.stringValue)
        let messages = { (id: String) throws -> [String] in
            try readLines(d.state + "/tasks/\(id)/transcript.jsonl").compactMap { $0["text"]?.stringValue }
        }
        #expect(try messages(first).contains(secret), "the client's value reached the worker")
        #expect(try messages(unset).contains("<unset>"), "a client without it gives the daemon's (none)")
        // The worker's own message holds it (progress.last_message); drover writes it nowhere.
        let request = try #require(try d.task(first)["request"]?.objectValue)
        #expect(!JSONWriter.string(.object(request)).contains(secret), "not in task.json's request")
        for file in ["/events.jsonl", "/daemon.log", "/tasks/\(first)/result.md"] {
            #expect(!readText(d.state + file).contains(secret), "never written to \(file)")
        }
    }

    @Test func aTaskPendingAcrossARestartGetsTheRestartedDaemonsEnvironment() throws {
        let d = try DaemonFixture(settings: #""defaultConcurrency": 1"#,
                                  agents: #""passer": { "command": ["drover-mock-agent"], "provider": "mock", "passEnv": ["PASS_TEST_KEY"] }"#)
        let holder = try d.launch("@hang", agent: "passer")
        #expect(eventually { (try? d.status(holder)) == "running" })
        let launched = try runDrover(["launch", "--state-dir", d.state, "--config", d.config, "--agent", "passer",
                                      "--prompt", "@echo-env PASS_TEST_KEY\n@result done"],
                                     in: d.folder, environment: ["PASS_TEST_KEY=kept-in-memory-only"])
        let pending = launched.stdout.trimmingSuffix("\n")
        #expect(try d.status(pending) == "pending")
        _ = try d.ok(["shutdown"])
        _ = try d.ok(["wait", pending, "--timeout", "20s"])  // a new daemon, without the variable
        let messages = try readLines(d.state + "/tasks/\(pending)/transcript.jsonl").compactMap { $0["text"]?.stringValue }
        #expect(messages.contains("<unset>") && !messages.contains("kept-in-memory-only"), "\(messages)")
        #expect(readText(d.state + "/daemon.log").contains("\(pending) is pending again; its passEnv (PASS_TEST_KEY) comes from this daemon's environment"))
    }

    @Test func aConfigErrorFoundWhileAutostartingIsExit2() throws {
        let d = try DaemonFixture()
        try write(d.config, "{ \"background_task\": {\n \"ttl\": \"soon\" } }")
        let result = try d.run(["status"])
        #expect(result.status == 2 && result.stderr.contains("config error") && result.stderr.contains("config.jsonc:2"), "\(result.stderr)")
        #expect(!FileSystem.exists(d.state + "/drover.sock"), "no daemon was started")
    }

    @Test func launchSetsAnyPerTaskSetting() throws {
        let d = try DaemonFixture()
        let id = try d.launch("@tool a\n@tool b\n@tool c\n@result never", agent: "explore",
                              ["--set", "maxToolCalls=2", "--set", "staleTimeout=5m", "--limit", "memory=512M", "--set", "retries=0"])
        #expect(eventually(withinMs: 20_000) { (try? d.status(id)) == "cancelled" })
        let task = try d.task(id)
        let request = try #require(task["request"]?.objectValue)
        #expect(request["maxToolCalls"] == 2 && request["staleTimeout"] == 300_000, "\(request)")
        #expect(request["limits"]?.objectValue?["memory"] == JSONValue.number(512 * 1024 * 1024), "\(request)")
        #expect(task["reason"] == "circuit_breaker" && task["error"]?.stringValue?.contains("maxToolCalls 2") == true, "the breaker rule was in force: \(task)")

        for (arguments, says) in [
            (["--set", "bogus=1"], "unknown key \"bogus\""),
            (["--set", "staleTimeout=soon"], "staleTimeout"),
            (["--set", "ttl=5s", "--ttl", "3s"], "ttl"),
            (["--limit", "memory=lots"], "--limit"),
            (["--set", "limits={}"], "use --limit"),
        ] {
            let result = try d.run(["launch", "--agent", "explore", "--prompt", "hi"] + arguments)
            #expect(result.status == 2 && result.stderr.contains(says), "\(arguments): \(result.stderr)")
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

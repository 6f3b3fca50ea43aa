import ArgumentParser
import DroverCore
import DroverWire
import Glibc

/// The three-agent story: explore, librarian and oracle work at once on the built-in mock
/// agent, and the wall time is set against running them one by one.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Three agents (explore, librarian, oracle) working at once on the built-in mock agent.",
        discussion: """
            The tasks' files go to --state-dir, else $DROVER_HOME, else a new folder drover-demo-XXXXXX in $TMPDIR (default /tmp), which is \
            kept for you to look at (the last line says how to remove it). --json prints one document: the folder, the \
            times, and each task's final state with its result.
            """
    )

    @OptionGroup var common: CommonOptions

    struct Part {
        let agent: String
        let prompt: String
        let seconds: String
    }

    static let parts = [
        Part(agent: "explore", prompt: "Find where the config file is loaded", seconds: "1.0"),
        Part(agent: "librarian", prompt: "Read the libuv docs on process groups", seconds: "1.5"),
        Part(agent: "oracle", prompt: "Review the slot pool design", seconds: "0.8"),
    ]

    func run() throws {
        _ = startSupervising()
        // The story needs the built-in agents as they are, whatever the user's config says.
        var config = DroverConfig()
        config.providerConcurrency = ["mock": 3]
        config.maxDepth = try common.loadSupervisingConfig().maxDepth
        // A folder the user named (as every command reads it), else a fresh one: never the
        // default state folder, which a daemon may be serving.
        let environment = ProcessEnvironment.current()
        let named = common.stateDirectory != nil || !(environment["DROVER_HOME"] ?? "").isEmpty
        let folder = named ? StateFolder(explicit: common.stateDirectory, environment: environment).path : try makeTemporaryFolder()
        let say: (String) -> Void = common.json ? { _ in } : { Terminal.out($0) }
        let engine: Engine
        do {
            engine = try Engine(folder: folder, config: config, launch: defaultLaunch(), policy: .daemon)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(2)
        }
        let (loop, store, supervisor) = (engine.loop, engine.store, engine.supervisor)
        let startMs = Clock.wallMs()
        var ended: [String: TaskSnapshot] = [:]
        var agentOf: [String: String] = [:]

        say("drover demo: three agents working at once, as a team would.")
        say("Each runs the built-in mock agent; provider \"mock\" allows 3 at once.\n")
        supervisor.onReport = { snapshot in
            let offset = "+" + Terminal.seconds(Clock.wallMs() - startMs)
            var line = "  \(Terminal.padLeft(offset, 7))  \(Terminal.pad(snapshot.agent, 10)) \(snapshot.id)  \(snapshot.status.rawValue)"
            switch snapshot.status {
            case .running: line += "  (pid \(snapshot.pid ?? 0), slot \(snapshot.slot ?? 0) of pool \(snapshot.pool))"
            case .completed, .error, .cancelled:
                line += " (\(snapshot.reason?.rawValue ?? "?")) after \(Terminal.seconds(snapshot.durationMs ?? 0))"
                ended[snapshot.id] = snapshot
                if ended.count == DemoCommand.parts.count { loop.stop() }
            case .pending: break
            }
            say(line)
        }
        var ids: [String] = []
        for part in Self.parts {
            var request = TaskRequest(agent: part.agent, prompt: part.prompt)
            request.env["DROVER_MOCK_SECONDS"] = part.seconds
            do {
                let snapshot = try supervisor.submit(request)
                ids.append(snapshot.id)
                agentOf[snapshot.id] = part.agent
                say("  launched  \(Terminal.pad(part.agent, 10)) \(snapshot.id)  \"\(part.prompt)\" (about \(part.seconds)s of work)")
            } catch {
                Terminal.error("drover: \(error)")
                throw ExitCode(2)
            }
        }
        say("")
        loop.run()
        store.close()
        let wallMs = Clock.wallMs() - startMs

        say("\nResults:")
        var sumMs: Int64 = 0
        var failed = false
        var tasks: [JSONValue] = []
        for id in ids {
            guard let snapshot = ended[id] ?? supervisor.snapshot(id) else { continue }
            sumMs += snapshot.durationMs ?? 0
            let result = snapshot.status == .completed ? snapshot.resultPath.flatMap { try? FileSystem.read($0) }.map { String(decoding: $0, as: UTF8.self) } : nil
            if result == nil { failed = true }
            var task = snapshot.json()
            task["result"] = JSONValue(result)
            tasks.append(.object(task))
            let text = result ?? "\(snapshot.status.rawValue): \(snapshot.error ?? "")"
            say("  \(Terminal.pad(snapshot.agent, 10)) \(Terminal.padLeft(Terminal.seconds(snapshot.durationMs ?? 0), 6))  \(text)")
        }
        let saved = sumMs > 0 ? Int(((Double(sumMs - wallMs) / Double(sumMs)) * 100).rounded()) : 0
        if common.json {
            let document: JSONObject = [
                "state_dir": .string(store.root), "temporary": .bool(!named), "wall_ms": .number(Double(wallMs)),
                "one_by_one_ms": .number(Double(sumMs)), "saved_percent": .number(Double(saved)), "tasks": .array(tasks),
            ]
            Terminal.out(JSONWriter.string(.object(document)))
        } else {
            say("\nWall time \(Terminal.seconds(wallMs)) against \(Terminal.seconds(sumMs)) one by one: \(saved)% saved.")
            say("Files: \(store.root)/tasks/<task id>/ (task.json, result.md, transcript.jsonl, and stderr.log if a worker wrote to stderr), events.jsonl")
            if !named { say("The folder is yours to look at; remove it with: rm -r \(shellQuoted(store.root))") }
        }
        if failed { throw ExitCode(1) }
    }

    private func makeTemporaryFolder() throws -> String {
        let base = ProcessEnvironment.current()["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/drover-demo-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!).map { String(cString: $0) } }
        guard let made else {
            Terminal.error("drover: cannot make a folder for the demo in \(base): \(String(cString: strerror(errno))) (give --state-dir)")
            throw ExitCode(2)
        }
        return made
    }
}

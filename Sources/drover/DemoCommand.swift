import ArgumentParser
import DroverCore
import Glibc

/// The three-agent story: explore, librarian and oracle work at once on the built-in mock
/// agent, and the wall time is set against running them one by one.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Three agents (explore, librarian, oracle) working at once on the built-in mock agent."
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
        let folder = common.stateDirectory ?? makeTemporaryFolder()
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

        Terminal.out("drover demo: three agents working at once, as a team would.")
        Terminal.out("Each runs the built-in mock agent; provider \"mock\" allows 3 at once.\n")
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
            Terminal.out(line)
        }
        var ids: [String] = []
        for part in Self.parts {
            var request = TaskRequest(agent: part.agent, prompt: part.prompt)
            request.env["DROVER_MOCK_SECONDS"] = part.seconds
            do {
                let snapshot = try supervisor.submit(request)
                ids.append(snapshot.id)
                agentOf[snapshot.id] = part.agent
                Terminal.out("  launched  \(Terminal.pad(part.agent, 10)) \(snapshot.id)  \"\(part.prompt)\" (about \(part.seconds)s of work)")
            } catch {
                Terminal.error("drover: \(error)")
                throw ExitCode(2)
            }
        }
        Terminal.out("")
        loop.run()
        store.close()
        let wallMs = Clock.wallMs() - startMs

        Terminal.out("\nResults:")
        var sumMs: Int64 = 0
        var failed = false
        for id in ids {
            guard let snapshot = ended[id] ?? supervisor.snapshot(id) else { continue }
            sumMs += snapshot.durationMs ?? 0
            let text: String
            if snapshot.status == .completed, let path = snapshot.resultPath, let bytes = try? FileSystem.read(path) {
                text = String(decoding: bytes, as: UTF8.self)
            } else {
                failed = true
                text = "\(snapshot.status.rawValue): \(snapshot.error ?? "")"
            }
            Terminal.out("  \(Terminal.pad(snapshot.agent, 10)) \(Terminal.padLeft(Terminal.seconds(snapshot.durationMs ?? 0), 6))  \(text)")
        }
        let saved = sumMs > 0 ? Int(((Double(sumMs - wallMs) / Double(sumMs)) * 100).rounded()) : 0
        Terminal.out("\nWall time \(Terminal.seconds(wallMs)) against \(Terminal.seconds(sumMs)) one by one: \(saved)% saved.")
        Terminal.out("Files: \(store.root)/tasks/<task id>/ (task.json, result.md, transcript.jsonl, and stderr.log if a worker wrote to stderr), events.jsonl")
        if failed { throw ExitCode(1) }
    }

    private func makeTemporaryFolder() -> String {
        var template = Array("/tmp/drover-demo-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { buffer in
            guard let made = mkdtemp(buffer.baseAddress!) else { return "drover-demo" }
            return String(cString: made)
        }
    }
}

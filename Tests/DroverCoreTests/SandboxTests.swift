@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Sandboxed tasks with the real bwrap (SPEC 17).
@Suite struct SandboxTests {
    static func sandboxed(_ settings: SandboxSettings = SandboxSettings(), cwd: String? = nil) -> (inout TaskRequest) -> Void {
        return { request in
            request.sandbox = settings
            if let cwd { request.cwd = cwd }
        }
    }

    static func sh(_ script: String) -> [String] { ["/bin/sh", "-c", script] }

    @Test func aWorkdirSandboxWritesItsFolderAndTmpButNotHomeOrUsr() throws {
        let home = try temporaryFolder(), work = try temporaryFolder()
        defer { removeTree(home); removeTree(work) }
        let harness = try Harness(environment: ["HOME": home])
        let script = """
            echo made > out.txt && echo tmp > /tmp/t && cat /tmp/t
            (echo x > "$HOME/evil") 2>/dev/null && echo home-written || echo home-refused
            (touch /usr/evil) 2>/dev/null && echo usr-written || echo usr-refused
            echo "$DROVER_SANDBOX"
            """
        let id = try harness.submit(command: Self.sh(script), Self.sandboxed(cwd: work))
        let ended = harness.run(until: [id])
        #expect(ended[id]?.status == .completed, "\(String(describing: ended[id]))")
        let lines = try harness.result(id).split(separator: "\n").map(String.init)
        #expect(Array(lines.prefix(3)) == ["tmp", "home-refused", "usr-refused"], "\(lines)")
        #expect(readText(work + "/out.txt") == "made\n", "the working folder is writable")
        #expect(!FileSystem.exists(home + "/evil") && !FileSystem.exists("/usr/evil"))
        let shown = try #require(try JSONParser.parse(lines.last ?? "").value.objectValue)
        #expect(shown["filesystem"] == "workdir" && shown["network"] == "host", "\(shown)")
        #expect(try harness.taskJSON(id)["sandbox"]?.objectValue?["filesystem"] == "workdir")
        #expect(!FileSystem.exists("/tmp/t") || readText("/tmp/t") != "tmp\n", "its /tmp was its own")
    }

    @Test func credentialsAreHiddenAndOtherTasksUnseen() throws {
        let home = try temporaryFolder(), work = try temporaryFolder()
        defer { removeTree(home); removeTree(work) }
        try FileSystem.makeDirectories(home + "/.ssh")
        try FileSystem.writeFile(home + "/.ssh/id_ed25519", Array("SECRET KEY\n".utf8))
        try FileSystem.writeFile(home + "/.netrc", Array("machine x password p\n".utf8))
        let harness = try Harness(environment: ["HOME": home])
        let other = try harness.submit(command: ["/bin/echo", "the other task's secret"])
        harness.run(until: [other])
        let state = harness.folder
        let script = """
            echo "ssh:[$(ls -A "$HOME/.ssh" 2>&1)]"
            echo "netrc:[$(cat "$HOME/.netrc" 2>&1)]"
            echo "tasks:[$(ls "\(state)/tasks" 2>&1)]"
            cat "\(state)/tasks/\(other)/result.md" 2>/dev/null && echo other-read || echo other-unreadable
            (echo '{}' > "\(state)/tasks/$DROVER_TASK_ID/task.json") 2>/dev/null && echo own-task-json-written || echo own-task-json-refused
            (touch "\(state)/tasks/\(other)/x" "\(state)/evil") 2>/dev/null && echo state-written || echo state-refused
            """
        let id = try harness.submit(command: Self.sh(script), Self.sandboxed(cwd: work))
        harness.run(until: [id])
        let lines = try harness.result(id).split(separator: "\n").map(String.init)
        #expect(lines == ["ssh:[]", "netrc:[]", "tasks:[\(id)]", "other-unreadable", "own-task-json-refused", "state-refused"], "\(lines)")
        #expect(readText(home + "/.ssh/id_ed25519") == "SECRET KEY\n", "hidden, not touched")
        #expect(!FileSystem.exists(state + "/evil") && !FileSystem.exists(state + "/tasks/\(other)/x"))
    }

    @Test func networkNoneKeepsOnlyLoopbackInside() throws {
        let server = try LoopbackServer()
        let harness = try Harness()
        let probe = ["/usr/bin/python3", "-c",
                     "import socket\ntry:\n socket.create_connection(('127.0.0.1', \(server.port)), 2); print('connected')\nexcept OSError as e:\n print('refused', e)"]
        let open = try harness.submit(command: probe, Self.sandboxed())
        let closed = try harness.submit(command: probe, Self.sandboxed(SandboxSettings(network: SandboxSettings.Network.none)))
        let bare = try harness.submit(command: probe)
        harness.run(until: [open, closed, bare])
        let opened = try harness.result(open), refused = try harness.result(closed), plain = try harness.result(bare)
        #expect(opened == "connected\n" && plain == "connected\n", "\(opened) \(plain)")
        #expect(refused.hasPrefix("refused"), "\(refused)")
    }

    @Test func aCancelledSandboxedWorkerLeavesNothingEvenASetsidGrandchild() throws {
        let harness = try Harness()
        // A duration no other process has: its argv marks the test's sleeps.
        let marker = "300.\(getpid())\(Int.random(in: 100_000..<1_000_000))"
        let id = try harness.submit(command: Self.sh("setsid sleep \(marker) & sleep \(marker)"), Self.sandboxed())
        #expect(eventually(withinMs: 10_000) {
            harness.run(forMs: 50)
            return Self.processes(named: marker).count == 2
        }, "both started: \(Self.processes(named: marker))")
        #expect(harness.supervisor.cancel(id))
        let ended = harness.run(until: [id])
        #expect(ended[id]?.status == .cancelled)
        #expect(eventually(withinMs: 5000) { Self.processes(named: marker).isEmpty }, "left: \(Self.processes(named: marker))")
        harness.expectNothingLeft(of: id)
    }

    @Test func theMockAgentAndAPythonWorkerRunUnchangedInside() throws {
        var config = Harness.testConfig()
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let example = parts.joined(separator: "/") + "/workers/python/examples/word_count.py"
        config.agents["wordcount"] = AgentConfig(name: "wordcount", command: ["python3", example], provider: "local")
        let harness = try Harness(config: config)
        let mock = try harness.submit("@message inside\n@result mock done", Self.sandboxed())
        let python = try harness.submit("one two\nthree four five", agent: "wordcount", Self.sandboxed(SandboxSettings(network: SandboxSettings.Network.none)))
        let ended = harness.run(until: [mock, python])
        #expect(ended[mock]?.status == .completed && (try? harness.result(mock)) == "mock done")
        #expect(ended[python]?.status == .completed, "\(String(describing: ended[python]))")
        let counted = try harness.result(python)
        #expect(counted.contains("5"), "\(counted)")
        #expect(try harness.taskJSON(python)["sandbox"]?.objectValue?["network"] == "none")
    }

    @Test func aMissingBwrapIsASpawnErrorNamingIt() throws {
        let harness = try Harness(environment: ["PATH": "/nonexistent"])
        let id = try harness.submit(command: ["/bin/true"], Self.sandboxed())
        let ended = harness.run(until: [id])
        #expect(ended[id]?.status == .error && ended[id]?.reason == .spawn)
        #expect(ended[id]?.error?.contains("cannot start bwrap") == true, "\(ended[id]?.error ?? "")")
    }

    /// Live `sleep MARKER` processes.
    static func processes(named marker: String) -> [Int32] {
        FileSystem.list("/proc").compactMap { Int32($0) }.filter { pid in
            let command = String(decoding: (try? FileSystem.read("/proc/\(pid)/cmdline")) ?? [], as: UTF8.self)
            return command.split(separator: "\0").map(String.init) == ["sleep", marker] && Processes.isAlive(pid)
        }
    }
    @Test func writableExtrasAndAWorktreeTaskThatCommitsInside() throws {
        let extra = try temporaryFolder(), repo = try temporaryFolder()
        defer { removeTree(extra); removeTree(repo) }
        let git = try #require(Git())
        for step in [["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "first"]] {
            #expect(git.runNow(step, in: repo, extraEnvironment: Git.identity).succeeded)
        }
        let identity = Dictionary(uniqueKeysWithValues: Git.identity.map { entry -> (String, String) in
            let parts = entry.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), String(parts[1]))
        })
        let harness = try Harness(environment: identity)
        let writer = try harness.submit(command: Self.sh("echo kept > \(extra)/note && echo ok"), Self.sandboxed(SandboxSettings(writable: [extra])))
        let coder = try harness.submit(command: Self.sh("echo a > a.txt && git add a.txt && git commit -q -m inside && echo b > b.txt")) {
            $0.cwd = repo
            $0.workdir = .worktree
            $0.sandbox = SandboxSettings()
        }
        let ended = harness.run(until: [writer, coder])
        #expect(ended[writer]?.status == .completed && readText(extra + "/note") == "kept\n")
        #expect(ended[coder]?.status == .completed, "\(String(describing: ended[coder]))")
        let log = git.runNow(["log", "--format=%s", "main..drover/\(coder)"], in: repo).text
        #expect(log.split(separator: "\n").count == 2 && log.hasSuffix("inside"), "its own commit, then drover's of b.txt: \(log)")
        #expect(git.runNow(["show", "drover/\(coder):b.txt"], in: repo).text == "b")
    }

    @Test func theBuiltInAgentsMayWriteTheirOwnFolders() throws {
        let claude = try #require(DroverConfig.builtInAgents["claude"])
        var box = SandboxLaunch(settings: SandboxSettings(), stateFolder: "/s", taskFolder: "/s/tasks/bg_00000001",
                                sessionFile: "/s/sessions/ses_00000001.jsonl", workdir: "/w", home: "/home/ann")
        box.needsWritable = claude.sandboxWritable.compactMap(box.expand)
        let argv = box.arguments(bwrap: "/usr/bin/bwrap")
        #expect(argv.joined(separator: " ").contains("--bind-try /home/ann/.claude /home/ann/.claude"), "\(argv)")
        // The state folder comes last: hidden, then the task's own folder read-only.
        let tail = Array(argv.suffix(11))
        #expect(tail.starts(with: ["--tmpfs", "/s", "--ro-bind", "/s/tasks/bg_00000001", "/s/tasks/bg_00000001"]), "\(tail)")
        #expect(argv.last == "--" && argv.contains("--unshare-pid") && !argv.contains("--unshare-net"))
    }

}

/// A TCP listener on 127.0.0.1 (outside any sandbox) that accepts in the kernel's backlog.
final class LoopbackServer {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw FileError(path: "127.0.0.1", operation: "listen", code: errno)
        }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

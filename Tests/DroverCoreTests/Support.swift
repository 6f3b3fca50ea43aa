@testable import DroverCore
import DroverWire
import Glibc
import Testing

func temporaryFolder() throws -> String {
    var template = Array("/tmp/drover-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let made = mkdtemp(buffer.baseAddress!) else { return nil }
        return String(cString: made)
    }
    guard let path else { throw FileError(path: "/tmp", operation: "create a temporary folder in", code: errno) }
    return path
}

func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in FileSystem.list(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

func readJSON(_ path: String) throws -> JSONObject {
    let value = try JSONParser.parse(try FileSystem.read(path)).value
    return try #require(value.objectValue, "\(path) is not a JSON object")
}

func readLines(_ path: String) throws -> [JSONObject] {
    try FileSystem.read(path).split(separator: 0x0A).map { line in
        try #require(try JSONParser.parse(line).value.objectValue)
    }
}

/// What /proc says about processes: used to prove that nothing a task started survives.
enum Processes {
    struct Entry {
        let pid: Int32
        let state: Character
        let pgrp: Int32
    }

    static func entry(_ pid: Int32) -> Entry? {
        guard let bytes = try? FileSystem.read("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 3, let state = fields[0].first, let pgrp = Int32(fields[2]) else { return nil }
        return Entry(pid: pid, state: state, pgrp: pgrp)
    }

    /// Running, or a zombie nobody has reaped.
    static func exists(_ pid: Int32) -> Bool { entry(pid) != nil }

    /// Running (a zombie is dead, if unreaped).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let entry = entry(pid) else { return false }
        return entry.state != "Z" && entry.state != "X"
    }

    /// Live members of a process group.
    static func liveMembers(ofGroup pgid: Int32) -> [Int32] {
        FileSystem.list("/proc").compactMap { Int32($0) }.filter { pid in
            guard let entry = entry(pid) else { return false }
            return entry.pgrp == pgid && entry.state != "Z" && entry.state != "X"
        }
    }
}

/// A supervisor on its own loop and temporary folder, with the mock agent from the build.
final class Harness {
    let folder: String
    let loop: EventLoop
    let store: ResultStore
    let supervisor: Supervisor
    private(set) var reports: [TaskSnapshot] = []
    private(set) var ended: [String: TaskSnapshot] = [:]
    private var awaited: Set<String> = []
    var onReport: (TaskSnapshot) -> Void = { _ in }

    /// Timers short enough for tests; everything else as in the spec.
    static func testConfig() -> DroverConfig {
        var config = DroverConfig()
        config.timers.killGrace = 500
        config.timers.minIdleTime = 0
        return config
    }

    init(config: DroverConfig = Harness.testConfig(), environment: [String: String] = [:], durable: Bool = false) throws {
        ProcessSetup.prepare()
        folder = try temporaryFolder()
        loop = EventLoop()
        store = try ResultStore(loop: loop, root: folder, durable: durable)
        var env = ProcessEnvironment.current()
        for (name, value) in environment { env[name] = value }
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: env)
        supervisor = Supervisor(loop: loop, config: config, store: store, launch: launch)
        supervisor.onReport = { [unowned self] snapshot in
            self.reports.append(snapshot)
            if snapshot.status.isTerminal {
                self.ended[snapshot.id] = snapshot
                self.awaited.remove(snapshot.id)
                if self.awaited.isEmpty { self.loop.stop() }
            }
            self.onReport(snapshot)
        }
    }

    deinit {
        store.close()
        removeTree(folder)
    }

    @discardableResult
    func submit(_ prompt: String, agent: String = "explore", _ configure: (inout TaskRequest) -> Void = { _ in }) throws -> String {
        var request = TaskRequest(agent: agent, prompt: prompt)
        configure(&request)
        return try supervisor.submit(request).id
    }

    @discardableResult
    func submit(command: [String], prompt: String = "", _ configure: (inout TaskRequest) -> Void = { _ in }) throws -> String {
        var request = TaskRequest(command: command, prompt: prompt)
        configure(&request)
        return try supervisor.submit(request).id
    }

    /// Runs the loop until every listed task has been reported ended (files written,
    /// child reaped), or the time is up.
    @discardableResult
    func run(until ids: [String], timeoutMs: Int = 30_000) -> [String: TaskSnapshot] {
        awaited = Set(ids).subtracting(ended.keys)
        if !awaited.isEmpty {
            let guardTimer = LoopTimer(loop: loop)
            guardTimer.start(after: timeoutMs) { [unowned self] in
                Issue.record("tasks still not ended after \(timeoutMs) ms: \(self.awaited.sorted())")
                self.loop.stop()
            }
            loop.run()
            guardTimer.stop()
        }
        return ended
    }

    /// Runs the loop for a while (to let a task get going).
    func run(forMs ms: Int) {
        let timer = LoopTimer(loop: loop)
        timer.start(after: ms) { [unowned self] in self.loop.stop() }
        loop.run()
    }

    func taskJSON(_ id: String) throws -> JSONObject { try readJSON(store.taskFile(id)) }

    func result(_ id: String) throws -> String {
        String(decoding: try FileSystem.read(store.resultFile(id)), as: UTF8.self)
    }

    /// The task's child and everything in its process group are gone.
    func expectNothingLeft(of id: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let pid = ended[id]?.pid ?? supervisor.snapshot(id)?.pid else { return }
        #expect(!Processes.exists(pid), "worker \(pid) of \(id) is still there (not reaped)", sourceLocation: sourceLocation)
        #expect(Processes.liveMembers(ofGroup: pid).isEmpty, "process group \(pid) of \(id) still has members", sourceLocation: sourceLocation)
    }

    func path(_ name: String) -> String { folder + "/" + name }
}

@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

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

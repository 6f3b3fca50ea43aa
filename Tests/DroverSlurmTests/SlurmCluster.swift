@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The one-node cluster the tests run on, and what squeue says of drover's jobs.
enum SlurmCluster {
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// The cluster answers and has the mock license; else the test fails saying how to start it.
    static func require() throws {
        guard let scontrol = HelperProgram("scontrol", environment: ProcessEnvironment.current()),
              scontrol.runNow(["show", "licenses", "--oneliner"]).text.contains("LicenseName=mock") else {
            throw Missing(description: "no Slurm cluster with the mock license: run `bash scripts/slurm-cluster.sh start` (as root, or with sudo) first")
        }
    }

    /// Jobs (id, state) of these tasks still in squeue.
    static func jobs(named taskIDs: [String]) -> [String] {
        guard let squeue = HelperProgram("squeue", environment: ProcessEnvironment.current()) else { return ["squeue missing"] }
        let names = taskIDs.map(LauncherSettings.jobName).joined(separator: ",")
        return squeue.runNow(["--noheader", "--format=%i %j %T", "--name=" + names]).text.split(separator: "\n").map(String.init)
    }
}

/// A supervisor on its own loop and folder, with drover's worker programs.
final class SlurmHarness {
    let folder: String
    let loop = EventLoop()
    let store: ResultStore
    let supervisor: Supervisor
    private(set) var ended: [String: TaskSnapshot] = [:]
    private var awaited: Set<String> = []

    init(config: DroverConfig) throws {
        ProcessSetup.prepare()
        folder = try temporaryFolder()
        store = try ResultStore(loop: loop, root: folder, durable: false)
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
        supervisor = Supervisor(loop: loop, config: config, store: store, launch: launch)
        supervisor.onReport = { [unowned self] snapshot in
            guard snapshot.status.isTerminal else { return }
            self.ended[snapshot.id] = snapshot
            self.awaited.remove(snapshot.id)
            if self.awaited.isEmpty { self.loop.stop() }
        }
    }

    deinit {
        store.close()
        removeTree(folder)
    }

    func submit(_ prompt: String, agent: String = "explore", _ configure: (inout TaskRequest) -> Void = { _ in }) throws -> String {
        var request = TaskRequest(agent: agent, prompt: prompt)
        configure(&request)
        return try supervisor.submit(request).id
    }

    @discardableResult
    func run(until ids: [String], timeoutMs: Int = 60_000) -> [String: TaskSnapshot] {
        awaited = Set(ids).subtracting(ended.keys)
        guard !awaited.isEmpty else { return ended }
        let guardTimer = LoopTimer(loop: loop)
        guardTimer.start(after: timeoutMs) { [unowned self] in
            Issue.record("tasks still not ended after \(timeoutMs) ms: \(self.awaited.sorted())")
            self.loop.stop()
        }
        loop.run()
        guardTimer.stop()
        return ended
    }

    func run(forMs ms: Int) {
        let timer = LoopTimer(loop: loop)
        timer.start(after: ms) { [unowned self] in self.loop.stop() }
        loop.run()
    }

    func result(_ id: String) throws -> String { String(decoding: try FileSystem.read(store.resultFile(id)), as: UTF8.self) }
}

@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

/// What a restart makes of a folder a crash left behind (SPEC 16.1, 16.2, 16.4), on folders
/// written by hand the way a crash at each moment leaves them.
@Suite struct FolderRecoveryTests {
    final class Folder {
        let root: String
        init() throws { root = try temporaryFolder() }
        deinit { removeTree(root) }

        func snapshot(_ id: String, _ status: TaskStatus, prompt: String = "x") -> TaskSnapshot {
            var s = TaskSnapshot(id: id, sessionID: "ses_" + id.dropFirst(3), agent: "explore", provider: "mock", model: nil, key: "explore",
                                 description: "d", prompt: prompt, createdMs: 1_000, ttlMs: 0, pool: "provider:mock")
            s.status = status
            if status.isTerminal {
                s.reason = status == .completed ? .result : .user
                s.endedMs = 2_000
            }
            if status == .running { s.startedMs = 1_500 }
            s.extra["request"] = .object(TaskRequest(agent: "explore", prompt: prompt).json())
            return s
        }

        func write(_ relative: String, _ text: String) throws {
            let path = root + "/" + relative
            try FileSystem.makeDirectories(FileSystem.dirname(of: path))
            try FileSystem.writeFile(path, Array(text.utf8))
        }

        func task(_ snapshot: TaskSnapshot) throws {
            try write("tasks/\(snapshot.id)/task.json", JSONWriter.string(.object(snapshot.json())))
        }

        func journal(_ events: [(String, TaskStatus)]) throws {
            let lines = events.map { id, status in
                String(decoding: TaskEvent(atMs: 1, taskID: id, sessionID: "ses_" + id.dropFirst(3), status: status,
                                           reason: status.isTerminal ? .result : nil, attempt: status == .running ? 1 : nil).line, as: UTF8.self)
            }
            try write("events.jsonl", lines.joined())
        }

        func recover() throws -> FolderRecovery {
            ProcessSetup.prepare()
            let loop = EventLoop()
            let store = try ResultStore(loop: loop, root: root, durable: false)
            let found = FolderRecovery.run(store: store)
            store.close()
            return found
        }

        func events() throws -> [TaskEvent] { try readLines(root + "/events.jsonl").compactMap(TaskEvent.init(json:)) }
        func taskJSON(_ id: String) throws -> JSONObject { try readJSON(root + "/tasks/\(id)/task.json") }
    }

    /// A lost task ends when it was last heard from, not when the next supervisor found it:
    /// its duration does not count the time no supervisor ran.
    @Test func aLostTasksDurationEndsWhenItWasLastHeardFrom() throws {
        let f = try Folder()
        let nowMs = Clock.wallMs()
        var running = f.snapshot("bg_0000000c", .running)
        running.startedMs = nowMs - 124_000
        running.progress.lastUpdateMs = nowMs - 123_800
        try f.task(running)
        try f.journal([("bg_0000000c", .pending), ("bg_0000000c", .running)])
        // task.json was last written half a second after the start, two minutes ago.
        let written = nowMs - 123_500
        var times = [timeval(tv_sec: Int(written / 1000), tv_usec: Int(written % 1000) * 1000),
                     timeval(tv_sec: Int(written / 1000), tv_usec: Int(written % 1000) * 1000)]
        #expect(utimes(f.root + "/tasks/bg_0000000c/task.json", &times) == 0)
        let found = try f.recover()
        let lost = try #require(found.lost.first)
        #expect(lost.reason == .lost && lost.endedMs == written, "\(String(describing: lost.endedMs)) vs \(written)")
        #expect(try f.taskJSON("bg_0000000c")["duration_ms"] == 500)
    }

    /// The new supervisor shows a lost task as lost at once, while its task.json, rewritten
    /// on the writer thread, still says running on disk: what is read back of an ended task
    /// is never older than what the supervisor holds.
    @Test func aLostTaskReadsAsLostBeforeItsTaskJsonIsRewritten() throws {
        let f = try Folder()
        try f.task(f.snapshot("bg_0000000d", .running))
        try f.journal([("bg_0000000d", .pending), ("bg_0000000d", .running)])
        ProcessSetup.prepare()
        let loop = EventLoop()
        let store = try ResultStore(loop: loop, root: f.root, durable: false)
        defer { store.close() }
        let supervisor = Supervisor(loop: loop, config: Harness.testConfig(), store: store,
                                    launch: WorkerLaunch(programDirectories: [], environment: [:]))
        let timer = LoopTimer(loop: loop)
        func spin(_ ms: Int) {
            timer.start(after: ms) { loop.stop() }
            loop.run()
        }
        // The disk stops keeping up: nothing recovery writes reaches task.json yet.
        store.holdWriter(true)
        let found = FolderRecovery.run(store: store)
        for (snapshot, request) in found.ended { supervisor.adopt(ended: snapshot, request: request) }
        spin(50)
        #expect(try f.taskJSON("bg_0000000d")["status"] == "running", "the writer was held")
        let shown = try #require(supervisor.view("bg_0000000d"))
        #expect(shown.status == .error && shown.reason == .lost, "\(shown.status) \(String(describing: shown.reason))")
        #expect(supervisor.request(of: "bg_0000000d")?.prompt == "x", "its request comes with it")
        // Once written, it is read back from the disk, and nothing is held for it any more.
        store.holdWriter(false)
        store.whenWritten { loop.stop() }
        loop.run()
        #expect(try f.taskJSON("bg_0000000d")["status"] == "error")
        #expect(eventually(withinMs: 5000) {
            spin(10)
            return store.unwrittenRecord("bg_0000000d") == nil
        })
        #expect(supervisor.view("bg_0000000d")?.reason == .lost)
    }

    @Test func eachStateACrashLeavesIsFinishedOnce() throws {
        let f = try Folder()
        let endedWithoutLine = "bg_000000a1", startedWhilePending = "bg_000000b2", running = "bg_000000c3", queued = "bg_000000d4"
        try f.task(f.snapshot(endedWithoutLine, .completed))
        try f.task(f.snapshot(startedWhilePending, .pending))
        try f.write("tasks/\(startedWhilePending)/result.md", "a result its task.json never committed")
        var runningRecord = f.snapshot(running, .running)
        runningRecord.pid = 999_999  // gone: nothing to kill
        try f.task(runningRecord)
        try f.task(f.snapshot(queued, .pending))
        try f.write("tasks/\(queued)/task.json.tmp", "{\"half")
        try f.journal([(endedWithoutLine, .pending), (endedWithoutLine, .running), (startedWhilePending, .pending),
                       (startedWhilePending, .running), (running, .pending), (running, .running), (queued, .pending)])

        let found = try f.recover()
        #expect(found.pending.map(\.snapshot.id) == [queued])
        #expect(Set(found.lost.map(\.id)) == [startedWhilePending, running])
        #expect(Set(found.ended.map(\.snapshot.id)) == [endedWithoutLine, startedWhilePending, running])
        for id in [startedWhilePending, running] {
            let task = try f.taskJSON(id)
            #expect(task["status"] == "error" && task["reason"] == "lost")
            #expect(task["error"]?.stringValue == FolderRecovery.lostMessage)
            #expect(!FileSystem.exists(f.root + "/tasks/\(id)/result.md"))
        }
        #expect(!FileSystem.exists(f.root + "/tasks/\(queued)/task.json.tmp"), "no *.tmp survives recovery")
        #expect(found.notes.contains { $0.contains("task.json.tmp") })
        // Exactly one end per task in the journal, agreeing with task.json.
        let events = try f.events()
        for id in [endedWithoutLine, startedWhilePending, running] {
            let ends = events.filter { $0.taskID == id && $0.status.isTerminal }
            #expect(ends.count == 1, "\(id): \(ends)")
            let task = try f.taskJSON(id)
            #expect(ends.first?.status.rawValue == task["status"]?.stringValue && ends.first?.reason?.rawValue == task["reason"]?.stringValue)
        }
        #expect(events.filter { $0.taskID == queued && $0.status.isTerminal }.isEmpty)
        // A second restart finds everything finished: it changes nothing.
        let again = try f.recover()
        #expect(again.lost.isEmpty && again.pending.map(\.snapshot.id) == [queued])
        #expect(try f.events().count == events.count)
    }

    @Test func nothingPlantedOrMisnamedIsEverRun() throws {
        let f = try Folder()
        let outside = try temporaryFolder()
        defer { removeTree(outside) }
        // A pending task kept outside, reached through a symlinked task folder.
        try FileSystem.makeDirectories(outside + "/bg_000000e5")
        try FileSystem.writeFile(outside + "/bg_000000e5/task.json", Array(JSONWriter.string(.object(f.snapshot("bg_000000e5", .pending).json())).utf8))
        try FileSystem.makeDirectories(f.root + "/tasks")
        #expect(symlink(outside + "/bg_000000e5", f.root + "/tasks/bg_000000e5") == 0)
        // A task.json that is itself a symlink.
        try FileSystem.makeDirectories(f.root + "/tasks/bg_000000e6")
        #expect(symlink(outside + "/bg_000000e5/task.json", f.root + "/tasks/bg_000000e6/task.json") == 0)
        // An id that is not its folder's, one that is not an id at all, a copy, garbage.
        var escaping = f.snapshot("bg_000000e7", .pending)
        escaping.id = "../../x"
        try f.write("tasks/bg_000000e7/task.json", JSONWriter.string(.object(escaping.json())))
        try f.write("tasks/bg_000000e8/task.json", JSONWriter.string(.object(f.snapshot("bg_000000e9", .pending).json())))
        try f.write("tasks/bg_000000e9.bak/task.json", JSONWriter.string(.object(f.snapshot("bg_000000e9", .pending).json())))
        try f.write("tasks/bg_000000ea/task.json", "{\"id\": \"bg_000000ea\", \"sta")
        let found = try f.recover()
        #expect(found.pending.isEmpty && found.lost.isEmpty && found.ended.isEmpty)
        let notes = found.notes.joined(separator: "\n")
        for expected in ["bg_000000e5: not a folder (a symlink, not followed)", "bg_000000e6/task.json: not a regular file (a symlink, not followed)",
                         "its id \"../../x\" is not its folder's name", "bg_000000e8/task.json: its id \"bg_000000e9\" is not its folder's name",
                         "bg_000000e9.bak: not a task folder", "bg_000000ea/task.json: does not parse"] {
            #expect(notes.contains(expected), "no note saying \(expected):\n\(notes)")
        }
        #expect(!FileSystem.exists(f.root + "/x") && !FileSystem.exists(FileSystem.dirname(of: f.root) + "/x"))
    }
}

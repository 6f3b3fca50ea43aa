import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A clean of thousands of ended tasks on a real daemon: the writer removes their folders
/// a chunk at a time, so other writes (a launch's task.json, hence its acknowledgement) go
/// between the chunks instead of waiting for the whole clean; and nothing outside the state
/// folder is removed through a link found inside it.
@Suite struct BigCleanTests {
    static let generated = 5000

    /// A daemon on a state folder holding `count` completed tasks (bench/make_tasks.py).
    private func daemon(withEnded count: Int) throws -> DaemonFixture {
        let d = try DaemonFixture()
        try #require(mkdir(d.state, 0o700) == 0)
        let script = FileSystem.dirname(of: FileSystem.dirname(of: FileSystem.dirname(of: #filePath))) + "/bench/make_tasks.py"
        let made = try runProgram(["python3", script, d.state, String(count)], in: d.folder)
        try #require(made.status == 0, "make_tasks.py: \(made.stderr)")
        return d
    }

    private func taskFolders(_ d: DaemonFixture) -> [String] { FileSystem.list(d.state + "/tasks") }

    private func frame(_ connection: RawConnection, timeoutMs: Int) -> JSONObject? {
        if case .frame(let frame) = connection.next(timeoutMs: timeoutMs) { return frame }
        return nil
    }

    @Test func aLaunchDuringABigCleanIsAcknowledgedBeforeTheCleanEnds() throws {
        let d = try daemon(withEnded: Self.generated)
        let old = Set(taskFolders(d))
        try #require(old.count == Self.generated)
        let known = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []
        try #require(known.count == Self.generated, "the daemon knows \(known.count) tasks")

        let cleaning = try RawConnection(d.state + "/drover.sock")
        let launching = try RawConnection(d.state + "/drover.sock")
        cleaning.send(json: #"{"type": "clean"}"#)
        // The clean has begun: the first folders are gone.
        #expect(eventually(withinMs: 60_000) { taskFolders(d).count < Self.generated }, "the clean never started removing")

        launching.send(json: #"{"type": "launch", "agent": "explore", "prompt": "@result launched meanwhile"}"#)
        let ack = try #require(frame(launching, timeoutMs: 120_000), "the launch got no answer")
        let launched = try #require(ack["task_id"]?.stringValue, "\(ack)")
        // Its task.json was on disk when it was acknowledged, while the clean still had
        // folders to remove: so the clean had not answered yet either.
        let left = Set(taskFolders(d)).intersection(old)
        #expect(!left.isEmpty, "every folder was removed before the launch was acknowledged")
        #expect(FileSystem.exists(d.state + "/tasks/\(launched)/task.json"))

        let answer = try #require(frame(cleaning, timeoutMs: 300_000), "the clean got no answer")
        #expect(answer["type"]?.stringValue == "ok", "\(answer)")
        let removed = answer["removed"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(removed) == old, "clean reports \(removed.count) removed")
        #expect(Set(taskFolders(d)).intersection(old).isEmpty)

        // The launched task ran meanwhile, and is all that is left.
        _ = try d.ok(["wait", launched, "--timeout", "60s"])
        #expect(try d.status(launched) == "completed")
        #expect(taskFolders(d) == [launched])
        let listed = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []
        #expect(listed.compactMap { $0.objectValue?["id"]?.stringValue } == [launched])
        if let pid = try d.task(launched)["pid"]?.intValue { #expect(eventually { !Processes.isAlive(Int32(pid)) }) }
    }

    /// Links inside the state folder, to a folder outside it: clean removes the links, never
    /// what they point to, whether the link is inside a task's folder or is the folder.
    @Test func cleanRemovesLinksNotWhatTheyPointTo() throws {
        let d = try daemon(withEnded: 3)
        let outside = d.folder + "/outside"
        try #require(mkdir(outside, 0o700) == 0)
        try FileSystem.writeFile(outside + "/keep.txt", Array("precious\n".utf8))
        let ids = taskFolders(d).sorted()
        try #require((try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []).count == 3)
        // One task's folder holds a link out; another's folder is itself replaced by one.
        try #require(symlink(outside, d.state + "/tasks/\(ids[0])/escape") == 0)
        try #require(symlink(outside + "/keep.txt", d.state + "/tasks/\(ids[0])/result.md.link") == 0)
        removeTree(d.state + "/tasks/\(ids[1])")
        try #require(symlink(outside, d.state + "/tasks/\(ids[1])") == 0)

        let answer = try d.ok(["clean", "--json"])
        let removed = try JSONParser.parse(answer).value.objectValue?["removed"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(removed) == Set(ids), "\(answer)")
        #expect(taskFolders(d).isEmpty, "\(taskFolders(d))")
        #expect(readText(outside + "/keep.txt") == "precious\n", "what a link pointed to is untouched")
        #expect(FileSystem.list(outside) == ["keep.txt"])
    }
}

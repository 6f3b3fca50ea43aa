import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover clean`, `retention` and the rotation of events.jsonl / usage.jsonl (SPEC 15),
/// on a real daemon with the mock agent.
@Suite struct HousekeepingTests {
    private func listed(_ d: DaemonFixture) throws -> [String] {
        let rows = try JSONParser.parse(try d.ok(["status", "--json"])).value.arrayValue ?? []
        return rows.compactMap { $0.objectValue?["id"]?.stringValue }
    }

    private func workersGone(_ d: DaemonFixture, _ ids: [String]) -> Bool {
        ids.allSatisfy { id in
            guard let pid = try? d.task(id)["pid"]?.intValue else { return true }
            return eventually { !Processes.isAlive(Int32(pid)) }
        }
    }

    @Test func cleanRemovesEndedTasksAndForgetsThem() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result one")
        let second = try d.launch("@result two")
        let failed = try d.launch("@exit 3")
        let hanging = try d.launch("@hang")
        _ = try d.run(["wait", first, second, failed, "--timeout", "20s"])
        #expect(workersGone(d, [first, second, failed]))
        // A dry run says what would go and removes nothing.
        let dry = try JSONParser.parse(try d.ok(["clean", "--dry-run", "--json"])).value.objectValue
        #expect(dry?["removed"]?.arrayValue?.compactMap(\.stringValue).sorted() == [first, second, failed].sorted())
        #expect(FileSystem.isDirectory(d.state + "/tasks/\(first)"))

        // By id: a running task is kept, with why; an unknown one is exit 6.
        let refused = try d.ok(["clean", hanging])
        #expect(refused.contains("Kept \(hanging): task \(hanging) is running"), "\(refused)")
        #expect(try d.run(["clean", "bg_00000000"]).status == 6)

        let removed = try d.ok(["clean", first])
        #expect(removed.hasPrefix("Removed 1 ended task(s). \(first)"), "\(removed)")
        #expect(!FileSystem.exists(d.state + "/tasks/\(first)"))
        #expect(try !listed(d).contains(first))
        let gone = try d.run(["status", first])
        #expect(gone.status == 6 && gone.stderr.contains("no such task: \(first)"), "\(gone.stderr)")
        #expect(try d.run(["output", first]).status == 6)

        // By status: only the failed one goes; the completed one and the running one stay.
        _ = try d.ok(["clean", "--status", "error"])
        #expect(!FileSystem.exists(d.state + "/tasks/\(failed)"))
        #expect(try listed(d) == [second, hanging])
        #expect(try d.ok(["output", second]).contains("two"), "the rest is untouched")
        #expect(try d.status(hanging) == "running")

        // Forgotten for good: a new daemon on the folder does not know them either.
        _ = try d.ok(["shutdown"])
        #expect(try listed(d) == [second, hanging])
        #expect(try d.run(["status", failed]).status == 6)
    }

    /// A task forgotten from memory (only its row held) still answers status, output,
    /// restart, continue and `after` from its task.json.
    @Test func endedTasksAreReadBackFromDiskOnDemand() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result alpha")
        _ = try d.ok(["wait", first, "--timeout", "20s"])
        let detail = try JSONParser.parse(try d.ok(["status", first, "--json"])).value
        #expect(detail.arrayValue?.first?.objectValue?["prompt"]?.stringValue == "@result alpha", "the whole record, from task.json")
        #expect(try d.ok(["output", first]).contains("alpha"))
        let dependent = try d.launch("@result beta {result:\(first)}", agent: "explore", ["--after", first])
        _ = try d.ok(["wait", dependent, "--timeout", "20s"])
        #expect(try d.status(dependent) == "completed")
        let again = try d.ok(["restart", first])
        _ = try d.ok(["wait", again, "--timeout", "20s"])
        #expect(try d.status(again) == "completed")
        let session = try d.task(first)["session_id"]?.stringValue ?? ""
        let continued = try JSONParser.parse(try d.ok(["continue", session, "--prompt", "@result gamma", "--json"])).value.objectValue
        let continuedID = continued?["task_id"]?.stringValue ?? ""
        _ = try d.ok(["wait", continuedID, "--timeout", "20s"])
        #expect(try d.status(continuedID) == "completed")
        #expect(workersGone(d, [first, dependent, again, continuedID]))
    }

    /// An ended task that a pending task waits for (`after`) is kept by clean.
    @Test func cleanKeepsWhatAPendingTaskDependsOn() throws {
        let d = try DaemonFixture()
        let blocker = try d.launch("@hang")
        let done = try d.launch("@result base")
        _ = try d.ok(["wait", done, "--timeout", "20s"])
        let waiting = try d.launch("@result next", agent: "explore", ["--after", done, "--after", blocker])
        let answer = try d.ok(["clean"])
        #expect(answer.contains("Removed 0 ended task(s)."), "\(answer)")
        #expect(answer.contains("Kept \(done): task \(done) is kept: \(waiting), which has not ended, depends on it"), "\(answer)")
        #expect(FileSystem.isDirectory(d.state + "/tasks/\(done)"))
        _ = try d.ok(["cancel", blocker])
        _ = try d.run(["wait", waiting, "--timeout", "20s"])
        let after = try d.ok(["clean"])
        #expect(after.contains("Removed 3 ended task(s)."), "\(after)")
        #expect(try listed(d).isEmpty)
        #expect(workersGone(d, [blocker, done]))
    }

    /// `retention.maxEnded`: the oldest ended tasks go as new ones end; at start-up too.
    @Test func retentionKeepsTheNewestEnded() throws {
        let d = try DaemonFixture(settings: "\"retention\": {\"maxEnded\": 2}")
        var ids: [String] = []
        for n in 1...4 {
            let id = try d.launch("@result r\(n)")
            _ = try d.ok(["wait", id, "--timeout", "20s"])
            ids.append(id)
        }
        #expect(eventually { (try? listed(d)) == Array(ids.suffix(2)) }, "\((try? listed(d)) ?? [])")
        #expect(eventually { !FileSystem.exists(d.state + "/tasks/\(ids[0])") && !FileSystem.exists(d.state + "/tasks/\(ids[1])") })
        #expect(FileSystem.isDirectory(d.state + "/tasks/\(ids[3])"))
        #expect(try d.run(["status", ids[0]]).status == 6)
        #expect(readText(d.state + "/daemon.log").contains("retention: removing 1 ended task(s)"))
    }

    /// events.jsonl and usage.jsonl rotate; a restarted daemon reads the journal across the
    /// rotation (no end is appended twice) and `drover usage` sums every file.
    @Test func logsRotateAndReadersFollow() throws {
        let d = try DaemonFixture(settings: "\"maxLogBytes\": \"1K\", \"maxLogFiles\": 5")
        var ids: [String] = []
        for _ in 1...8 { ids.append(try d.launch("@usage 10 5 0.01\n@result ok")) }
        _ = try d.run(["wait"] + ids + ["--timeout", "60s"])
        #expect(FileSystem.exists(d.state + "/events.jsonl.1"))
        #expect(FileSystem.exists(d.state + "/events.jsonl.2"))
        #expect(FileSystem.exists(d.state + "/usage.jsonl.1"))
        let files = ["events.jsonl.5", "events.jsonl.4", "events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"]
        for file in files {
            let size = (try? FileSystem.read(d.state + "/" + file).count) ?? 0
            #expect(size <= 1 << 10, "\(file): \(size) bytes")
        }
        let usage = try d.ok(["usage", "--json"])
        #expect(usage.contains("0.08"), "the cost of all 8 tasks, across usage.jsonl's files: \(usage)")
        _ = try d.ok(["shutdown"])
        // A new daemon: the ends in the rotated files count, so none is appended again.
        _ = try d.ok(["status"])
        let journal = files.map { readText(d.state + "/" + $0) }.joined()
        for id in ids {
            let ends = journal.split(separator: "\n").filter { $0.contains(id) && $0.contains("\"status\":\"completed\"") }.count
            #expect(ends == 1, "\(id): \(ends) ends")
        }
        #expect(try listed(d) == ids)
        #expect(workersGone(d, ids))
    }
}

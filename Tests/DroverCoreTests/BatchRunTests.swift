@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

@Suite struct BatchRunTests {
    func makeRun(_ manifest: String, folder: String, resume: Bool = false, haltOnError: Bool = false, config: DroverConfig = Harness.testConfig()) throws -> BatchRun {
        ProcessSetup.prepare()
        let entries = try Manifest.parse(Array(manifest.utf8), file: "m.jsonl", config: config)
        var options = BatchRun.Options(resultsDirectory: folder)
        options.resume = resume
        options.haltOnError = haltOnError
        options.durable = false
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
        return try BatchRun(entries: entries, config: config, launch: launch, options: options)
    }

    @Test func runsAManifestAndWritesTheSummaryAndJoblog() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let summary = try makeRun("""
            {"agent": "explore", "prompt": "@result one", "description": "first"}
            {"agent": "librarian", "prompt": "@result two"}
            {"command": ["/bin/echo", "three"]}
            """, folder: folder).run()
        #expect(summary.exitCode == 0)
        #expect(summary.counts.completed == 3)
        let json = try readJSON(folder + "/summary.json")
        #expect(json["counts"]?.objectValue?["completed"] == 3)
        let rows = try #require(json["tasks"]?.arrayValue)
        #expect(rows.map { $0.objectValue?["line"] } == [1, 2, 3])
        #expect(rows.allSatisfy { $0.objectValue?["status"] == "completed" })
        let joblog = String(decoding: try FileSystem.read(folder + "/joblog.tsv"), as: UTF8.self).split(separator: "\n")
        #expect(joblog.first == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
        #expect(joblog.count == 4)
        #expect(joblog.dropFirst().allSatisfy { $0.split(separator: "\t").count == 9 })
    }

    /// The joblog is GNU parallel's: a second run into the folder without --resume starts it
    /// afresh, Send and Receive are 0 (no transfers), and a raw command is its argv as a shell
    /// reads it back.
    @Test func theJoblogIsRewrittenByAFreshRunAndNamesTheCommand() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let manifest = """
            {"agent": "explore", "prompt": "@result one", "description": "first"}
            {"command": ["/bin/echo", "two words", "it's"]}
            """
        for _ in 0..<2 { _ = try makeRun(manifest, folder: folder).run() }
        let joblog = readText(folder + "/joblog.tsv").split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        #expect(joblog.count == 3, "a header and one line per row, not appended to: \(joblog)")
        #expect(joblog.first?.joined(separator: " ") == "Seq Host Starttime JobRuntime Send Receive Exitval Signal Command")
        #expect(joblog.dropFirst().map { "\($0[0]) \($0[1]) \($0[4]) \($0[5]) \($0[6]) \($0[7])" } == ["1 : 0 0 0 0", "2 : 0 0 0 0"])
        #expect(joblog[1][8] == "explore: first")
        #expect(joblog[2][8] == #"/bin/echo 'two words' 'it'\''s'"#)
    }

    /// onComplete runs for every row, as under the daemon, and `run` returns only once those
    /// commands have exited (nothing of a run outlives it).
    @Test func onCompleteRunsForEveryRowBeforeTheRunReturns() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        var config = Harness.testConfig()
        config.onComplete = ["/bin/sh", "-c", "sleep 0.3; echo \"$DROVER_STATUS {description} $$\" > \"$0\"", folder + "/ended-{task_id}"]
        let summary = try makeRun("""
            {"agent": "explore", "prompt": "@result ok", "description": "agent row"}
            {"command": ["/bin/false"], "description": "failing row"}
            """, folder: folder + "/results", config: config).run()
        #expect(summary.rows.count == 2)
        for row in summary.rows {
            let expected = row.line == 1 ? "completed agent row" : "error failing row"
            let written = readText(folder + "/ended-\(row.snapshot.id)")
            #expect(written.hasPrefix(expected + " "), "\(written)")
            let pid = try #require(Int32(String(written.split(separator: " ").last ?? "").trimmed))
            #expect(!Processes.isAlive(pid), "the onComplete command \(pid) has exited and been reaped")
        }
    }

    /// A row's queue is its manifest line (`--resume` reruns from there), so a queued row
    /// has no folder yet; its running task.json follows after a short run, and a row that
    /// ends sooner goes straight to its final one. events.jsonl has every state.
    @Test func aRowsFilesAppearWhenItLeavesTheQueue() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        var config = Harness.testConfig()
        config.providerConcurrency = ["local": 1]
        let run = try makeRun("""
            {"command": ["/bin/sleep", "1"]}
            {"command": ["/bin/echo", "two"]}
            {"command": ["/bin/echo", "three"]}
            """, folder: folder, config: config)
        var foldersWhenTheFirstStarted: [String]?
        var firstFileAtStart: Bool?
        var firstFileLater: JSONObject?
        var checkLater: LoopTimer?
        run.onProgress = { snapshot, _ in
            guard snapshot.status == .running, foldersWhenTheFirstStarted == nil else { return }
            foldersWhenTheFirstStarted = FileSystem.list(folder + "/tasks")
            firstFileAtStart = FileSystem.exists(folder + "/tasks/\(snapshot.id)/task.json")
            let timer = LoopTimer(loop: run.supervisor.loop)
            timer.start(after: 400) { firstFileLater = try? readJSON(folder + "/tasks/\(snapshot.id)/task.json") }
            checkLater = timer
        }
        let summary = try run.run()
        checkLater?.stop()
        #expect(summary.counts.completed == 3)
        #expect(foldersWhenTheFirstStarted?.count == 1, "queued rows have no folder yet: \(foldersWhenTheFirstStarted ?? [])")
        #expect(firstFileAtStart == false)
        #expect(firstFileLater?["status"] == "running")
        #expect(firstFileLater?["pid"]?.intValue != nil)
        for row in summary.rows {
            let task = try readJSON(folder + "/tasks/\(row.snapshot.id)/task.json")
            #expect(task["status"] == "completed")
            // Files with content only (and result.md, which completion promises): none of
            // these wrote to stderr, and a raw command's transcript holds its output lines.
            let printed: Set<String> = row.line == 1 ? [] : ["transcript.jsonl"]
            #expect(Set(FileSystem.list(folder + "/tasks/\(row.snapshot.id)")) == Set(["task.json", "result.md"]).union(printed))
        }
        let events = String(decoding: try FileSystem.read(folder + "/events.jsonl"), as: UTF8.self).split(separator: "\n")
        for status in ["pending", "running", "completed"] {
            #expect(events.filter { $0.contains("\"status\":\"\(status)\"") }.count == 3, "\(status)")
        }
    }

    @Test func exitCodesFollowTheWorstOutcome() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let failed = try makeRun("{\"agent\": \"explore\", \"prompt\": \"@exit 2\"}\n{\"agent\": \"explore\", \"prompt\": \"@result ok\"}", folder: folder + "/a").run()
        #expect(failed.exitCode == 1)
        var config = Harness.testConfig()
        config.timers.taskTtl = 200
        let cancelled = try makeRun("{\"agent\": \"explore\", \"prompt\": \"@hang\"}", folder: folder + "/b", config: config).run()
        #expect(cancelled.exitCode == 4)
        #expect(cancelled.counts.cancelled == 1)
    }

    @Test func resumeSkipsWhatCompletedBefore() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let marker = folder + "/marker"
        // The second row fails until the marker file exists.
        let manifest = """
            {"agent": "explore", "prompt": "@result stays done"}
            {"command": ["/bin/sh", "-c", "test -e \(marker) && echo fixed"]}
            {"agent": "explore", "prompt": "@result also done"}
            """
        let first = try makeRun(manifest, folder: folder + "/results").run()
        #expect(first.counts.completed == 2 && first.counts.error == 1)
        try FileSystem.writeFile(marker, [])
        let second = try makeRun(manifest, folder: folder + "/results", resume: true).run()
        #expect(second.exitCode == 0)
        #expect(second.counts.completed == 3)
        #expect(second.rows.filter(\.carriedOver).map(\.line) == [1, 3])
        #expect(FileSystem.list(folder + "/results/tasks").count == 4, "only the failed row ran again")
        let joblog = String(decoding: try FileSystem.read(folder + "/results/joblog.tsv"), as: UTF8.self)
        #expect(joblog.split(separator: "\n").count == 5, "the joblog is appended to, as GNU parallel does")
    }

    @Test func haltOnErrorCancelsTheRest() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        var config = Harness.testConfig()
        config.providerConcurrency = ["mock": 2]
        let summary = try makeRun("""
            {"agent": "explore", "prompt": "@sleep 100ms\\n@exit 1"}
            {"agent": "explore", "prompt": "@message slow\\n@hang"}
            {"agent": "explore", "prompt": "@result never starts"}
            {"agent": "explore", "prompt": "@result never starts"}
            """, folder: folder, haltOnError: true, config: config).run()
        #expect(summary.exitCode == 1)
        #expect(summary.counts.error == 1)
        #expect(summary.counts.cancelled == 3)
        #expect(summary.rows.filter { $0.snapshot.status == .cancelled }.allSatisfy { $0.snapshot.reason == .shutdown })
    }
}

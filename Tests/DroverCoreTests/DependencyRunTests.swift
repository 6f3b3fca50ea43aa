@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Dependencies and priorities through `drover run` with real workers (SPEC 13).
@Suite struct DependencyRunTests {
    func run(_ manifest: String, folder: String, config: DroverConfig = Harness.testConfig()) throws -> (BatchRun.Summary, [String: TaskSnapshot]) {
        ProcessSetup.prepare()
        let entries = try Manifest.parse(Array(manifest.utf8), file: "dag.jsonl", config: config)
        var options = BatchRun.Options(resultsDirectory: folder)
        options.durable = false
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
        let summary = try BatchRun(entries: entries, config: config, launch: launch, options: options).run()
        var byDescription: [String: TaskSnapshot] = [:]
        for row in summary.rows { byDescription[row.snapshot.description] = row.snapshot }
        return (summary, byDescription)
    }

    @Test func implementThenReviewWithItsResultThenFixRunInOrder() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        // Written out of order on purpose: the rows go in the order their dependencies need.
        let (summary, tasks) = try run("""
            {"agent": "explore", "name": "fix", "after": ["review"], "description": "fix", "prompt": "@result fixed what {result:review} said"}
            {"agent": "explore", "name": "review", "after": ["implement"], "description": "review", "prompt": "@result reviewed [{result:implement}]"}
            {"agent": "explore", "name": "implement", "description": "implement", "prompt": "@sleep 300ms\\n@result the code"}
            """, folder: folder)
        #expect(summary.exitCode == 0 && summary.counts.completed == 3, "\(summary.counts)")
        let implement = try #require(tasks["implement"]), review = try #require(tasks["review"]), fix = try #require(tasks["fix"])
        #expect((review.startedMs ?? 0) >= (implement.endedMs ?? .max), "review started after implement ended")
        #expect((fix.startedMs ?? 0) >= (review.endedMs ?? .max), "fix started after review ended")
        #expect(readText(folder + "/tasks/\(review.id)/result.md") == "reviewed [the code]")
        #expect(readText(folder + "/tasks/\(fix.id)/result.md") == "fixed what reviewed [the code] said")
        // The prompt the reviewer ran with is in its task.json.
        #expect(try readJSON(folder + "/tasks/\(review.id)/task.json")["prompt"] == "@result reviewed [the code]")
    }

    @Test func aFailedDependencyCancelsItsDependentsTransitivelyAndNothingElse() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let (summary, tasks) = try run("""
            {"command": ["/bin/false"], "name": "build", "description": "build"}
            {"command": ["/bin/echo", "tested"], "name": "test", "after": ["build"], "description": "test"}
            {"command": ["/bin/echo", "shipped"], "after": ["test"], "description": "ship"}
            {"command": ["/bin/echo", "unrelated"], "description": "docs"}
            """, folder: folder)
        #expect(summary.exitCode == 1)
        let build = try #require(tasks["build"]), test = try #require(tasks["test"]), ship = try #require(tasks["ship"])
        #expect(build.status == .error && build.reason == .exitCode)
        #expect(test.status == .cancelled && test.reason == .dependency && test.error == "its dependency \(build.id) ended error (exit_code)")
        #expect(ship.status == .cancelled && ship.reason == .dependency && ship.error == "its dependency \(test.id) ended cancelled (dependency)")
        #expect(test.startedMs == nil && ship.startedMs == nil && test.attempts.isEmpty, "never started")
        #expect(tasks["docs"]?.status == .completed)
        let events = try readLines(folder + "/events.jsonl").filter { $0["task_id"]?.stringValue == test.id }.compactMap { $0["status"]?.stringValue }
        #expect(events == ["pending", "cancelled"], "\(events)")
    }

    @Test func underALimitOfOneHigherPrioritiesStartFirst() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        var config = Harness.testConfig()
        config.providerConcurrency = ["local": 1]
        let (_, tasks) = try run("""
            {"command": ["/bin/sleep", "0.3"], "description": "first"}
            {"command": ["/bin/true"], "description": "p0-a"}
            {"command": ["/bin/true"], "description": "p5", "priority": 5}
            {"command": ["/bin/true"], "description": "p0-b"}
            {"command": ["/bin/true"], "description": "p-1", "priority": -1}
            {"command": ["/bin/true"], "description": "p1", "priority": 1}
            """, folder: folder, config: config)
        let order = tasks.values.sorted { ($0.startedMs ?? 0, $0.endedMs ?? 0) < ($1.startedMs ?? 0, $1.endedMs ?? 0) }.map(\.description)
        #expect(order == ["first", "p5", "p1", "p0-a", "p0-b", "p-1"])
    }
}

import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

@Suite struct PythonWorkerTests {
    /// The module's own tests (frame codec, runner over real pipes, parsers, sessions against
    /// the fake server), so that `swift test` covers them.
    @Test func pythonUnitTestsPass() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let tests = try ChildProcess(["python3", "-m", "unittest", "discover", "-s", PythonWorkers.folder + "/tests"],
                                     stdout: folder + "/out", stderr: folder + "/err", in: PythonWorkers.folder)
        let status = tests.wait(withinMs: 60_000)
        if status == nil { tests.stop() }
        #expect(status == 0, "python3 -m unittest: \(readText(folder + "/err"))")
        #expect(readText(folder + "/err").contains("OK"))
        #expect(Processes.liveMembers(ofGroup: tests.pid).isEmpty)
    }

    @Test func theExampleWorkerRunsUnderDrover() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let outcome = try runBatch(in: folder, config: config(agents: [
            agent("wordcount", [PythonWorkers.example], provider: "local"),
            agent("slowcount", [PythonWorkers.example, "--line-delay", "0.4"], provider: "local"),
        ]), manifest: [
            #"{"agent": "wordcount", "prompt": "one two\nthree four five"}"#,
            #"{"agent": "slowcount", "prompt": "a\nb\nc\nd\ne\nf\ng\nh", "ttl": "700ms"}"#,
        ])
        #expect(outcome.command.status == 4, "one task is cancelled by its ttl: \(outcome.command.stderr)")

        let done = outcome.task(1)
        #expect(done["status"] == "completed" && done["reason"] == "result", "\(done)")
        #expect(outcome.result(1) == "5 words in 2 line(s)")
        let data = try #require(done["result_data"]?.objectValue)
        #expect(data["words"] == 5)
        #expect(data["per_line"] == [2, 3])
        #expect(done["progress"]?.objectValue?["tool_calls"] == 2)
        let transcript = try outcome.transcript(1)
        #expect(transcript.first?["dir"] == "out" && transcript.first?["type"] == "start")
        #expect(transcript.contains { $0["type"] == "hello" && $0["worker"] == "word-count" && $0["protocol"] == 1 })
        #expect(transcript.filter { $0["type"] == "progress" && $0["tool"] == "count_words" }.count == 2)
        #expect(transcript.last?["type"] == "result")

        // Cancelled by its ttl, the worker leaves on the cancel frame instead of waiting for SIGKILL.
        let cancelled = outcome.task(2)
        #expect(cancelled["status"] == "cancelled" && cancelled["reason"] == "ttl", "\(cancelled)")
        let duration = try #require(cancelled["duration_ms"]?.intValue)
        // drover's ttl timer counts from just before the spawn, started_at from just after it.
        #expect(duration >= 600 && duration < 700 + 2_000, "ended \(duration) ms after its start")
        #expect(cancelled["signal"]?.isNull == true && cancelled["exit_code"] == 0, "not killed: \(cancelled) \(outcome.stderr(2))")
        // drover sends the cancel frame and SIGTERM together: either may be seen first.
        #expect(outcome.stderr(2).contains("drover_worker: stopping: "))
        #expect(try outcome.transcript(2).contains { $0["dir"] == "out" && $0["type"] == "cancel" })
        outcome.expectNoWorkerLeft()
    }
}

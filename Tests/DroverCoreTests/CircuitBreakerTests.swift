@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

@Suite struct CircuitBreakerTests {
    @Test func tooManyToolCallsCancelTheTask() throws {
        var config = Harness.testConfig()
        config.breaker.maxToolCalls = 5
        let h = try Harness(config: config)
        let calls = (0..<10).map { "@tool grep {\"n\": \($0)}" }.joined(separator: "\n")
        let id = try h.submit(calls + "\n@hang")
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .cancelled && task.reason == .circuitBreaker)
        #expect(task.error == "circuit breaker: 6 tool calls, over maxToolCalls 5")
        h.expectNothingLeft(of: id)
    }

    @Test func theSameCallOverAndOverTripsIt() throws {
        let h = try Harness()
        let id = try h.submit(String(repeating: "@tool read {\"path\": \"a.txt\"}\n", count: 5) + "@hang") {
            $0.breaker.maxRepeatedToolCalls = 3
        }
        // Different calls in between reset the count.
        let varied = try h.submit("@tool read {\"path\": \"a\"}\n@tool read {\"path\": \"b\"}\n@tool read {\"path\": \"a\"}\n@tool read {\"path\": \"b\"}\n@result varied") {
            $0.breaker.maxRepeatedToolCalls = 1
        }
        let ended = h.run(until: [id, varied])
        #expect(ended[id]?.reason == .circuitBreaker)
        #expect(ended[id]?.error?.contains("4 times in a row, over maxRepeatedToolCalls 3") == true)
        #expect(ended[id]?.error?.contains("read {\"path\":\"a.txt\"}") == true)
        #expect(ended[varied]?.reason == .result)
    }

    @Test func aRunawayTranscriptIsCapped() throws {
        let h = try Harness()
        let id = try h.submit("@flood 200 1000\n@hang") { $0.breaker.maxTranscriptBytes = 20_000 }
        let task = try #require(h.run(until: [id])[id])
        #expect(task.reason == .circuitBreaker)
        #expect(task.error?.contains("over maxTranscriptBytes 20000") == true)
        // Writing stops at the cap (give or take the line that crossed it).
        #expect(try FileSystem.read(h.store.transcriptFile(id)).count < 22_000)
    }

    @Test func theBreakerIsConfigurable() throws {
        let config = try ConfigLoader.parse(Array(#"{"background_task": {"maxToolCalls": 10}, "agents": {"x": {"command": ["a"], "maxRepeatedToolCalls": 0, "maxTranscriptBytes": "1M"}}}"#.utf8), file: "c.jsonc")
        let agent = try #require(config.agents["x"])
        let resolved = agent.breaker.over(config.breaker).resolved
        #expect(resolved.maxToolCalls == 10 && resolved.maxRepeatedToolCalls == 0 && resolved.maxTranscriptBytes == 1 << 20)
        #expect(DroverConfig().breaker.resolved == (4000, 20, 1 << 30))
    }
}

@Suite struct IsolationTests {
    @Test func aTaskCanGetAPrivateWorkingFolder() throws {
        var config = Harness.testConfig()
        var agent = AgentConfig(name: "sandboxed", command: ["drover-mock-agent"], provider: "mock")
        agent.workdir = .task
        config.agents["sandboxed"] = agent
        let h = try Harness(config: config)
        let id = try h.submit("@pwd", agent: "sandboxed")
        let fromManifest = try Manifest.parse(Array(#"{"agent": "explore", "prompt": "@pwd", "workdir": "task"}"#.utf8), file: "m", config: config)
        let second = try h.supervisor.submit(fromManifest[0].request).id
        h.run(until: [id, second])
        #expect(try h.result(id) == h.store.taskDirectory(id) + "/work")
        #expect(try h.result(second) == h.store.taskDirectory(second) + "/work")
        var info = stat()
        stat(h.store.taskDirectory(id) + "/work", &info)
        #expect(info.st_mode & 0o777 == 0o700)
    }

    @Test func dronersRefuseToNestPastMaxDepth() throws {
        #expect(ProcessSetup.nestingRefusal(maxDepth: 3, environment: ["DROVER_DEPTH": "2"]) == nil)
        #expect(ProcessSetup.nestingRefusal(maxDepth: 3, environment: [:]) == nil)
        let refusal = try #require(ProcessSetup.nestingRefusal(maxDepth: 3, environment: ["DROVER_DEPTH": "3"]))
        #expect(refusal.contains("depth 3") && refusal.contains("maxDepth is 3"))
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array("{\"command\": [\"/bin/true\"]}\n".utf8))
        let nested = try runDrover(["run", "tasks.jsonl"], in: folder, environment: ["DROVER_DEPTH=3"])
        #expect(nested.status == 2)
        #expect(nested.stderr.contains("refusing to start"))
        #expect(try runDrover(["run", "tasks.jsonl", "--results", "r"], in: folder, environment: ["DROVER_DEPTH=2"]).status == 0)
    }
}

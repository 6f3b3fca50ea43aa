@testable import DroverCore
import DroverTestSupport
import Testing

@Suite struct ManifestTests {
    func parse(_ text: String) throws(ManifestError) -> [ManifestEntry] {
        try Manifest.parse(Array(text.utf8), file: "tasks.jsonl", config: DroverConfig())
    }

    @Test func readsAgentAndCommandRows() throws {
        let entries = try parse("""
            {"agent": "explore", "prompt": "look", "description": "d", "ttl": "90s", "env": {"A": "1"}, "model": "m", "provider": "p", "cwd": "/tmp"}

            {"command": ["/bin/echo", "{prompt}"], "prompt": "hi"}
            """)
        #expect(entries.map(\.line) == [1, 3])
        #expect(entries[0].request.agent == "explore")
        #expect(entries[0].request.timers.taskTtl == 90_000)
        #expect(entries[0].request.env == ["A": "1"])
        #expect(entries[1].request.command == ["/bin/echo", "{prompt}"])
    }

    @Test func identicalRowsGetDistinctIdentities() throws {
        let entries = try parse("{\"command\": [\"/bin/true\"]}\n{\"command\": [\"/bin/true\"]}\n")
        #expect(entries[0].identity != entries[1].identity)
        #expect(try parse("{\"command\": [\"/bin/true\"]}\n")[0].identity == entries[0].identity)
    }

    @Test func everyBadLineIsReportedWithItsNumber() {
        do {
            _ = try parse("""
                {"agent": "explore", "prompt": "fine"}
                {"agent": "nobody", "prompt": "x"}
                not json
                {"agent": "explore"}
                {"command": []}
                {"agent": "explore", "prompt": "x", "tll": "5s"}
                {"agent": "explore", "prompt": "x", "ttl": "later"}
                [1]
                """)
            Issue.record("accepted a bad manifest")
        } catch {
            #expect(error.problems.map(\.line) == [2, 3, 4, 5, 6, 7, 8])
            let text = error.description
            #expect(text.contains("tasks.jsonl:2: unknown agent \"nobody\""))
            #expect(text.contains("tasks.jsonl:3: not valid JSON"))
            #expect(text.contains("tasks.jsonl:4: needs \"prompt\""))
            #expect(text.contains("tasks.jsonl:6: unknown key \"tll\""))
            #expect(text.contains("tasks.jsonl:7: \"ttl\" must be a duration"))
        }
    }
}

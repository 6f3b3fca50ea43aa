@testable import DroverCore
import DroverTestSupport
import Testing

/// A manifest's dependencies (SPEC 13), checked before anything runs: each problem is
/// `FILE:LINE: what is wrong`.
@Suite struct ManifestGraphTests {
    func problems(_ text: String) -> String? {
        do {
            _ = try Manifest.parse(Array(text.utf8), file: "dag.jsonl", config: DroverConfig())
            return nil
        } catch {
            return error.description
        }
    }

    @Test func namesAfterPriorityAndTheOrderRowsGoIn() throws {
        let entries = try Manifest.parse(Array("""
            {"command": ["/bin/true"], "name": "review", "after": ["implement"], "prompt": "check {result:implement}", "priority": 2}
            {"command": ["/bin/true"], "name": "implement"}
            {"command": ["/bin/true"], "after": ["review", "implement"]}
            """.utf8), file: "dag.jsonl", config: DroverConfig())
        #expect(entries.map(\.name) == ["review", "implement", nil])
        #expect(entries[0].after == ["implement"] && entries[0].request.priority == 2 && entries[1].request.priority == 0)
        #expect(ManifestGraph.order(entries).map(\.line) == [2, 1, 3], "each row after the rows it waits for")
    }

    @Test(arguments: [
        (#"{"command": ["/bin/true"], "after": ["nobody"]}"#, #"dag.jsonl:1: after: no row is named "nobody""#),
        ("{\"command\": [\"/bin/true\"], \"name\": \"a\"}\n{\"command\": [\"/bin/true\"], \"name\": \"a\"}",
         #"dag.jsonl:2: the name "a" is taken by line 1"#),
        ("{\"command\": [\"/bin/true\"], \"name\": \"a\", \"after\": [\"c\"]}\n{\"command\": [\"/bin/true\"], \"name\": \"b\", \"after\": [\"a\"]}\n{\"command\": [\"/bin/true\"], \"name\": \"c\", \"after\": [\"b\"]}",
         "dag.jsonl:1: a cycle: a (line 1) -> c (line 3) -> b (line 2) -> a"),
        (#"{"command": ["/bin/true"], "name": "self", "after": ["self"]}"#, "dag.jsonl:1: a cycle: self (line 1) -> self"),
        ("{\"command\": [\"/bin/true\"], \"name\": \"a\"}\n{\"agent\": \"explore\", \"prompt\": \"use {result:a}\"}",
         #"dag.jsonl:2: the prompt's {result:a} names a row that is not in "after""#),
        (#"{"command": ["/bin/true"], "name": "has space"}"#, "dag.jsonl:1: a row name is 1-64 letters"),
        (#"{"command": ["/bin/true"], "after": "a"}"#, #"dag.jsonl:1: "after" must be an array of row names"#),
        (#"{"command": ["/bin/true"], "priority": 1.5}"#, #"dag.jsonl:1: "priority" must be a whole number"#),
        (#"{"command": ["/bin/true"], "after": ["a", "a"], "name": "b"}"#, #"dag.jsonl:1: "after" names a twice"#),
    ])
    func badGraphsAreRefusedWithTheirLine(text: String, message: String) {
        let found = problems(text)
        #expect(found?.hasPrefix(message) == true, "\(found ?? "accepted")")
    }
}

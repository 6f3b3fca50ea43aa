@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

@Suite struct CommandLineTests {
    @Test func theDemoTellsItsStory() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let result = try runDrover(["demo", "--state-dir", folder + "/state"], in: folder)
        #expect(result.status == 0, "\(result.stderr)")
        for agent in ["explore", "librarian", "oracle"] {
            #expect(result.stdout.contains("launched  \(agent)"))
            #expect(result.stdout.contains("\(agent) finished:"))
        }
        #expect(result.stdout.contains("pending"))
        #expect(result.stdout.contains("running"))
        #expect(result.stdout.contains("completed (result)"))
        #expect(result.stdout.contains("% saved"))
        #expect(FileSystem.list(folder + "/state/tasks").count == 3)
    }

    @Test func runReportsABadManifestLineAndStartsNothing() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array("{\"agent\": \"explore\", \"prompt\": \"x\"}\n{\"agent\": \"explore\", \"prompt\": 3}\n".utf8))
        let result = try runDrover(["run", "tasks.jsonl", "--results", "out"], in: folder)
        #expect(result.status == 2)
        #expect(result.stderr.contains("tasks.jsonl:2: \"prompt\" must be a string"))
        #expect(!FileSystem.exists(folder + "/out"))
    }

    @Test func runPrintsOnlyTheSummaryWhenNotOnATerminal() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array("{\"agent\": \"explore\", \"prompt\": \"@result a\"}\n{\"command\": [\"/bin/false\"]}\n".utf8))
        let result = try runDrover(["run", "tasks.jsonl", "--results", "out"], in: folder)
        #expect(result.status == 1)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("drover run: 2 tasks in"))
        #expect(result.stdout.contains("1 completed, 1 error, 0 cancelled"))
        #expect(result.stdout.contains("error(exit_code)"))
        let json = try runDrover(["run", "tasks.jsonl", "--results", "out2", "--json"], in: folder)
        #expect(json.status == 1)
        let summary = try #require(try JSONParser.parse(json.stdout).value.objectValue)
        #expect(summary["counts"]?.objectValue?["error"] == 1)
    }

    @Test func aGrandchildThatLeavesTheProcessGroupIsKilledToo() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        // The shell starts a sleep in a session of its own (out of the task's process group,
        // which a group kill would reach), gives it time to get there, prints its pid, exits.
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array(#"{"command": ["/bin/sh", "-c", "setsid sleep 1000 & sleep 0.3; echo $!"]}"#.utf8 + [0x0A]))
        let result = try runDrover(["run", "tasks.jsonl", "--results", "out", "--json"], in: folder)
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try parseObject(result.stdout)
        let path = try #require(summary["tasks"]?.arrayValue?.first?.objectValue?["result_path"]?.stringValue)
        let escaped = try #require(Int32(readText(path).split(separator: "\n").first ?? ""))
        #expect(eventually { !Processes.isAlive(escaped) }, "the setsid grandchild \(escaped) survived")
    }

    @Test func aBadConfigIsExitTwoNamingTheKey() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/bad.jsonc", Array("{\n  \"background_task\": { \"killGrace\": \"soon\" }\n}\n".utf8))
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array("{\"agent\": \"explore\", \"prompt\": \"x\"}\n".utf8))
        let result = try runDrover(["run", "tasks.jsonl", "--config", "bad.jsonc"], in: folder)
        #expect(result.status == 2)
        #expect(result.stderr.contains("bad.jsonc:2: background_task.killGrace"))
    }
}

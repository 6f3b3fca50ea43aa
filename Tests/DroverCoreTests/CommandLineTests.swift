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

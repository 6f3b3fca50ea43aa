@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// What a new user meets first: the demo, a shutdown with nothing to stop, a flag that does
/// not apply.
@Suite struct FirstStepsTests {
    /// --json is one document; DROVER_HOME is honoured as every command honours it.
    @Test func theDemoPrintsJSONIntoDroverHome() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let result = try runDrover(["demo", "--json"], in: folder, environment: ["DROVER_HOME=\(folder)/home"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try parseObject(result.stdout)
        #expect(document["state_dir"]?.stringValue == folder + "/home")
        #expect(document["temporary"] == false)
        let tasks = (document["tasks"]?.arrayValue ?? []).compactMap { $0.objectValue }
        #expect(tasks.count == 3)
        #expect(tasks.map { $0["agent"]?.stringValue } == ["explore", "librarian", "oracle"])
        #expect(tasks.allSatisfy { $0["status"] == "completed" && $0["result"]?.stringValue?.contains("finished:") == true })
        #expect(Set(FileSystem.list(folder + "/home/tasks")) == Set(tasks.compactMap { $0["id"]?.stringValue }))
    }

    /// Without a folder named, the demo makes one in $TMPDIR, keeps it and says how to remove it.
    @Test func theDemoNamesItsTemporaryFolder() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let result = try runDrover(["demo"], in: folder, environment: ["TMPDIR=\(folder)", "DROVER_HOME="])
        #expect(result.status == 0, "\(result.stderr)")
        let made = FileSystem.list(folder).filter { $0.hasPrefix("drover-demo-") }
        #expect(made.count == 1)
        let path = folder + "/" + (made.first ?? "")
        #expect(result.stdout.contains("remove it with: rm -r \(path)\n"), "\(result.stdout)")
        #expect(FileSystem.list(path + "/tasks").count == 3)
    }

    @Test func shutdownWithoutADaemonSaysThereIsNothingToStop() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let result = try runDrover(["shutdown", "--state-dir", folder + "/state"], in: folder)
        #expect(result.status == 5)
        #expect(result.stderr == "drover: no drover daemon answers at \(folder)/state/drover.sock: nothing to shut down\n")
        #expect(!result.stderr.contains("--no-autostart"))
        let status = try runDrover(["status", "--no-autostart", "--state-dir", folder + "/state"], in: folder)
        #expect(status.status == 5)
        #expect(status.stderr.contains("leave out --no-autostart"), "the hint is for a user who gave the flag")
    }

    @Test func runRefusesStateDirAndNamesResults() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array("{\"command\": [\"/bin/true\"]}\n".utf8))
        let result = try runDrover(["run", "tasks.jsonl", "--state-dir", "state"], in: folder)
        #expect(result.status == 2)
        #expect(result.stderr.contains("--state-dir is the daemon's folder; drover run writes its tasks to --results FOLDER"))
        #expect(FileSystem.list(folder).filter { $0.hasPrefix("drover-results") || $0 == "state" }.isEmpty, "nothing ran")
    }
}

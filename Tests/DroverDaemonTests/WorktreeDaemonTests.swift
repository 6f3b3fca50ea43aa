import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A real repository with one commit, for the daemon's worktree tasks.
private final class DaemonTestRepository {
    let path: String
    let git = Git()!

    init(in folder: String) throws {
        path = folder + "/repo"
        try FileSystem.makeDirectories(path)
        _ = git.runNow(["init", "-q", "-b", "main"], in: path)
        try FileSystem.writeFile(path + "/README.md", Array("a project\n".utf8))
        _ = git.runNow(["add", "README.md"], in: path)
        let committed = git.runNow(["commit", "-q", "-m", "first"], in: path, extraEnvironment: Git.identity)
        #expect(committed.succeeded, "\(committed.message)")
    }

    func output(_ arguments: String...) -> String { git.runNow(arguments, in: path).text }
    var worktrees: Int { output("worktree", "list", "--porcelain").split(separator: "\n").filter { $0.hasPrefix("worktree ") }.count }
}

/// `drover launch --worktree` through the daemon (SPEC 13): continue goes on from the
/// branch, `--base @bg_...` starts from a dependency's branch, and a daemon killed while a
/// worktree task runs leaves its work on the branch after the restart.
@Suite struct WorktreeDaemonTests {
    @Test func aContinuedWorktreeTaskGoesOnFromItsBranch() throws {
        let d = try DaemonFixture()
        let repo = try DaemonTestRepository(in: d.folder)
        let first = try d.launch("@write plan.txt the plan\n@result wrote the plan", ["--worktree", "--cwd", repo.path])
        _ = try d.ok(["wait", first, "--timeout", "20s"])
        let made = try #require(try d.task(first)["worktree"]?.objectValue)
        #expect(made["branch"] == .string("drover/\(first)") && made["files_changed"] == 1, "\(made)")
        let session = try #require(try d.task(first)["session_id"]?.stringValue)
        let next = try d.ok(["continue", session, "--prompt", "@read plan.txt\n@write code.txt the code\n@result coded"])
        let output = try d.ok(["output", next, "--wait", "--timeout", "20s"])
        #expect(output.contains("coded"), "\(output)")
        let transcript = readText(d.state + "/tasks/\(next)/transcript.jsonl")
        #expect(transcript.contains("\"text\":\"the plan\""), "the continuation read the first task's file")
        let continued = try #require(try d.task(next)["worktree"]?.objectValue)
        #expect(continued["base"] == made["head"], "\(continued)")
        #expect(repo.output("show", "drover/\(next):plan.txt") == "the plan" && repo.output("show", "drover/\(next):code.txt") == "the code")
        #expect(repo.worktrees == 1)
    }

    @Test func aBaseNamingATaskWaitsForItAndStartsFromItsBranch() throws {
        let d = try DaemonFixture()
        let repo = try DaemonTestRepository(in: d.folder)
        let implement = try d.launch("@write feature.txt the feature\n@sleep 300ms\n@result done", ["--worktree", "--cwd", repo.path])
        let review = try d.launch("@read feature.txt\n@result reviewed {result:\(implement)}", ["--worktree", "--cwd", repo.path, "--base", "@" + implement])
        #expect(try d.task(review)["request"]?.objectValue?["after"] == [.string(implement)], "--base @ID implies --after ID")
        let output = try d.ok(["output", review, "--wait", "--timeout", "20s"])
        #expect(output.contains("reviewed done"), "\(output)")
        #expect(readText(d.state + "/tasks/\(review)/transcript.jsonl").contains("\"text\":\"the feature\""))
        let malformed = try d.run(["launch", "--agent", "explore", "--prompt", "x", "--worktree", "--base", "@nope"])
        #expect(malformed.status == 2 && malformed.stderr.contains("--base @nope"), "\(malformed.stderr)")
        let stray = try d.run(["launch", "--agent", "explore", "--prompt", "x", "--base", "main"])
        #expect(stray.status == 2 && stray.stderr.contains("--base needs --worktree"), "\(stray.stderr)")
    }

    @Test func aDaemonKilledWhileAWorktreeTaskRunsLeavesItsWorkOnTheBranch() throws {
        let d = try DaemonFixture()
        let repo = try DaemonTestRepository(in: d.folder)
        let id = try d.launch("@write partial.txt half of it\n@sleep 60s", ["--worktree", "--cwd", repo.path])
        #expect(eventually(withinMs: 10_000) { FileSystem.exists(d.state + "/tasks/\(id)/work/partial.txt") })
        #expect(eventually(withinMs: 5000) { (try? d.task(id)["worktree"]?.objectValue?["path"]) != nil }, "the running record is on disk")
        let worker = try #require(try d.task(id)["pid"]?.intValue)
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually(withinMs: 5000) { !Processes.isAlive(daemon) })
        // A new daemon, which recovers the folder: what it shows at once, task.json soon after.
        let shown = try JSONParser.parse(try d.ok(["status", id, "--json"])).value.arrayValue?.first?.objectValue
        #expect(shown?["status"] == "error" && shown?["worktree"]?.objectValue?["files_changed"] == 1, "\(String(describing: shown))")
        #expect(eventually(withinMs: 5000) { (try? d.status(id)) == "error" })
        let lost = try d.task(id)
        #expect(lost["status"] == "error" && lost["reason"] == "lost", "\(lost)")
        let record = try #require(try d.task(id)["worktree"]?.objectValue)
        #expect(record["files_changed"] == 1 && record["path"] == nil, "\(record)")
        #expect(repo.output("show", "drover/\(id):partial.txt") == "half of it")
        #expect(!FileSystem.exists(d.state + "/tasks/\(id)/work") && repo.worktrees == 1, "removed and pruned")
        #expect(eventually(withinMs: 5000) { !Processes.isAlive(pid_t(worker)) }, "worker \(worker) left behind")
    }

    @Test func delegateTaskRunsAWorktreeTaskAndAReviewerFromItsBranch() throws {
        let d = try DaemonFixture()
        let repo = try DaemonTestRepository(in: d.folder)
        let client = try MCPClient(d)
        _ = try client.initialize()
        let first = try client.call("delegate_task", ["description": "implement", "prompt": "@write api.txt the api\n@result done", "agent": "explore",
                                                       "worktree": true, "repo": .string(repo.path)])
        #expect(!first.isError, "\(first.text)")
        let implement = try #require(field("Task ID", in: first.text))
        let second = try client.call("delegate_task", ["description": "review", "prompt": "@read api.txt\n@result reviewed", "agent": "explore",
                                                        "worktree": true, "repo": .string(repo.path), "base": .string("@" + implement)])
        let review = try #require(field("Task ID", in: answerBody(second.text)))
        #expect(try d.task(review)["request"]?.objectValue?["after"] == [.string(implement)], "base @ID waits for it")
        let result = try client.call("background_output", ["task_id": .string(review), "block": true, "timeout": 20_000])
        #expect(answerBody(result.text).contains("reviewed"), "\(result.text)")
        #expect(readText(d.state + "/tasks/\(review)/transcript.jsonl").contains("\"text\":\"the api\""))
        #expect(repo.output("show", "drover/\(review):api.txt") == "the api")
        let stray = try client.call("delegate_task", ["prompt": "x", "agent": "explore", "base": "main"])
        #expect(stray.isError && stray.text.contains("give worktree: true too"), "\(stray.text)")
    }
}

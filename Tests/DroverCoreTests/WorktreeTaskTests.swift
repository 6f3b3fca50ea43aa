@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A real repository in a temporary folder, with one commit.
private final class TestRepository {
    let path: String
    let git = Git()!

    init() throws {
        path = try temporaryFolder()
        run("init", "-q", "-b", "main")
        try FileSystem.writeFile(path + "/README.md", Array("a project\n".utf8))
        run("add", "README.md")
        run("commit", "-q", "-m", "first")
    }

    deinit { removeTree(path) }

    @discardableResult
    func run(_ arguments: String..., in folder: String? = nil) -> HelperResult {
        let result = git.runNow(arguments, in: folder ?? path, extraEnvironment: Git.identity)
        #expect(result.succeeded, "git \(arguments.joined(separator: " ")): \(result.message)")
        return result
    }

    func output(_ arguments: String..., in folder: String? = nil) -> String {
        git.runNow(arguments, in: folder ?? path, extraEnvironment: Git.identity).text
    }

    var head: String { output("rev-parse", "HEAD") }
    var status: String { output("status", "--porcelain") }
    var droverBranches: [String] { output("branch", "--list", "drover/*", "--format=%(refname:short)").split(separator: "\n").map(String.init) }
    var worktrees: Int { output("worktree", "list", "--porcelain").components("worktree ") }
}

extension String {
    fileprivate func components(_ prefix: String) -> Int { split(separator: "\n").filter { $0.hasPrefix(prefix) }.count }
}

/// Worktree tasks with real git and real workers (SPEC 13).
@Suite struct WorktreeTaskTests {
    fileprivate static func worktree(_ repo: TestRepository, _ configure: @escaping (inout TaskRequest) -> Void = { _ in }) -> (inout TaskRequest) -> Void {
        return { request in
            request.cwd = repo.path
            request.workdir = .worktree
            configure(&request)
        }
    }

    static func record(_ harness: Harness, _ id: String) throws -> JSONObject {
        try #require(try harness.taskJSON(id)["worktree"]?.objectValue, "no worktree in task.json of \(id)")
    }

    @Test func threeTasksAtOnceWriteDifferentFilesOnThreeBranches() throws {
        let repo = try TestRepository()
        let harness = try Harness()
        let base = repo.head
        var ids: [String] = []
        for name in ["alpha", "beta", "gamma"] {
            ids.append(try harness.submit(command: ["/bin/sh", "-c", "echo \(name) > \(name).txt; echo second line >> \(name).txt"], Self.worktree(repo)))
        }
        let ended = harness.run(until: ids)
        for (id, name) in zip(ids, ["alpha", "beta", "gamma"]) {
            #expect(ended[id]?.status == .completed, "\(String(describing: ended[id]))")
            let record = try Self.record(harness, id)
            #expect(record["branch"] == .string("drover/\(id)") && record["base"] == .string(base) && record["repo"] == .string(repo.path))
            #expect(record["files_changed"] == 1 && record["insertions"] == 2 && record["deletions"] == 0, "\(record)")
            #expect(record["path"] == nil, "the folder is gone")
            #expect(!FileSystem.exists(harness.store.taskDirectory(id) + "/work"))
            #expect(repo.output("rev-list", "--count", "\(base)..drover/\(id)") == "1", "one commit on the branch")
            #expect(repo.output("rev-parse", "drover/\(id)") == record["head"]?.stringValue)
            #expect(repo.output("show", "drover/\(id):\(name).txt") == "\(name)\nsecond line")
            #expect(repo.output("log", "-1", "--format=%an <%ae>", "drover/\(id)") == "drover <drover@localhost>")
            let diff = readText(harness.store.taskDirectory(id) + "/changes.diff")
            #expect(diff.contains("+++ b/\(name).txt") && diff.contains("+\(name)\n"), "\(diff)")
            harness.expectNothingLeft(of: id)
        }
        // The main work tree is untouched until something is applied.
        #expect(repo.status == "" && repo.head == base && !FileSystem.exists(repo.path + "/alpha.txt"))
        #expect(repo.worktrees == 1, "git lists only the main work tree")
        #expect(Set(repo.droverBranches) == Set(ids.map { "drover/\($0)" }))
    }

    @Test func aWorkerThatCommitsItselfAndOneThatLeavesChangesBothEndOnTheirBranch() throws {
        let repo = try TestRepository()
        let harness = try Harness(environment: Dictionary(uniqueKeysWithValues: Git.identity.map {
            let parts = $0.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), String(parts[1]))
        }))
        let base = repo.head
        let committing = try harness.submit(command: ["/bin/sh", "-c", "echo mine > own.txt && git add own.txt && git commit -q -m 'the worker commits'"],
                                            Self.worktree(repo) { $0.env = ["GIT_AUTHOR_NAME": "worker", "GIT_COMMITTER_NAME": "worker"] })
        let leaving = try harness.submit(command: ["/bin/sh", "-c", "echo left > left.txt && echo changed >> README.md"], Self.worktree(repo) {
            $0.description = "update the readme"
        })
        let ended = harness.run(until: [committing, leaving])
        #expect(ended[committing]?.status == .completed && ended[leaving]?.status == .completed)
        #expect(repo.output("log", "--format=%s|%an", "\(base)..drover/\(committing)") == "the worker commits|worker", Comment(rawValue: "no empty commit added"))
        #expect(repo.output("log", "--format=%s|%an", "\(base)..drover/\(leaving)") == "update the readme|drover")
        #expect(repo.output("log", "-1", "--format=%b", "drover/\(leaving)") == "drover task \(leaving)")
        let record = try Self.record(harness, leaving)
        #expect(record["files_changed"] == 2 && record["insertions"] == 2, "\(record)")
        #expect(repo.output("show", "drover/\(leaving):README.md") == "a project\nchanged")
    }

    @Test func aCancelledTaskStillRecordsWhatItDid() throws {
        let repo = try TestRepository()
        let harness = try Harness()
        let id = try harness.submit("@write notes.txt half done\n@sleep 30s", Self.worktree(repo))
        var waited = 0
        while (harness.supervisor.snapshot(id)?.progress.toolCalls ?? 0) < 1 && waited < 10_000 {
            harness.run(forMs: 50)
            waited += 50
        }
        #expect(harness.supervisor.snapshot(id)?.extra["worktree"]?.objectValue?["path"] != nil, "the running record names the folder")
        #expect(harness.supervisor.cancel(id))
        let ended = harness.run(until: [id])
        #expect(ended[id]?.status == .cancelled && ended[id]?.reason == .user)
        let record = try Self.record(harness, id)
        #expect(record["files_changed"] == 1, "\(record)")
        #expect(repo.output("show", "drover/\(id):notes.txt") == "half done")
        #expect(repo.worktrees == 1)
        harness.expectNothingLeft(of: id)
    }

    @Test func theWorkerRunsInTheWorktreeAtTheCwdsPlaceInTheRepository() throws {
        let repo = try TestRepository()
        try FileSystem.makeDirectories(repo.path + "/src/lib")
        try FileSystem.writeFile(repo.path + "/src/lib/code.txt", Array("x\n".utf8))
        repo.run("add", "-A")
        repo.run("commit", "-q", "-m", "src")
        let harness = try Harness()
        let id = try harness.submit(command: ["/bin/pwd"]) {
            $0.cwd = repo.path + "/src/lib"
            $0.workdir = .worktree
            $0.worktree.keepWorktree = true
        }
        let ended = harness.run(until: [id])
        let work = harness.store.taskDirectory(id) + "/work"
        #expect(try harness.result(id) == FileSystem.realPath(work + "/src/lib").map { $0 + "\n" } ?? "")
        #expect(ended[id]?.status == .completed)
        let record = try Self.record(harness, id)
        #expect(record["path"] == .string(work) && FileSystem.isDirectory(work + "/src/lib"), "kept")
        #expect(record["files_changed"] == 0)
        #expect(repo.worktrees == 2)
        repo.run("worktree", "remove", "--force", work)
    }

    @Test func aRepoThatIsNotAGitWorkTreeOrABaseThatDoesNotResolveIsASpawnErrorAndNothingIsMade() throws {
        let repo = try TestRepository()
        let plain = try temporaryFolder()
        defer { removeTree(plain) }
        let harness = try Harness()
        let notRepo = try harness.submit(command: ["/bin/true"]) {
            $0.cwd = plain
            $0.workdir = .worktree
        }
        let badBase = try harness.submit(command: ["/bin/true"], Self.worktree(repo) { $0.worktree.base = "no-such-branch" })
        let ended = harness.run(until: [notRepo, badBase])
        #expect(ended[notRepo]?.status == .error && ended[notRepo]?.reason == .spawn)
        #expect(ended[notRepo]?.error?.hasPrefix("repo \(plain) is not inside a git work tree") == true, "\(ended[notRepo]?.error ?? "")")
        #expect(ended[badBase]?.status == .error && ended[badBase]?.reason == .spawn)
        #expect(ended[badBase]?.error?.hasPrefix("base \"no-such-branch\" does not resolve to a commit of \(repo.path)") == true, "\(ended[badBase]?.error ?? "")")
        #expect(ended[notRepo]?.pid == nil && ended[badBase]?.pid == nil, "no worker started")
        #expect(repo.droverBranches.isEmpty && repo.worktrees == 1 && repo.status == "")
        #expect(!FileSystem.exists(harness.store.taskDirectory(badBase) + "/work"))
    }

    @Test func theBaseIsPinnedAtLaunch() throws {
        let repo = try TestRepository()
        let harness = try Harness()
        let pinned = repo.head
        let blocker = try harness.submit(command: ["/bin/sleep", "0.3"])
        let id = try harness.submit(command: ["/bin/sh", "-c", "cat later.txt 2>/dev/null || echo absent"], Self.worktree(repo) { $0.after = [blocker] })
        // A commit made while the task waits is not in its branch.
        try FileSystem.writeFile(repo.path + "/later.txt", Array("later\n".utf8))
        repo.run("add", "later.txt")
        repo.run("commit", "-q", "-m", "later")
        _ = harness.run(until: [blocker, id])
        #expect(try harness.result(id) == "absent\n")
        #expect(try Self.record(harness, id)["base"] == .string(pinned))
        #expect(try harness.taskJSON(id)["request"]?.objectValue?["base"] == .string(pinned), "kept pinned for a restart")
    }

    @Test func aDAGRunsInOrderAndTheReviewerSeesTheImplementersFiles() throws {
        let repo = try TestRepository()
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let manifest = """
            {"agent": "explore", "name": "implement", "description": "implement", "workdir": "worktree", "cwd": "\(repo.path)", "prompt": "@write feature.txt the feature\\n@sleep 200ms\\n@result implemented feature.txt"}
            {"command": ["/bin/sh", "-c", "cat feature.txt; cat"], "name": "review", "description": "review", "workdir": "worktree", "cwd": "\(repo.path)", "base": "@implement", "prompt": "review of: {result:implement}"}
            {"command": ["/bin/sh", "-c", "echo fixed > fix.txt"], "name": "fix", "after": ["review"], "description": "fix", "workdir": "worktree", "cwd": "\(repo.path)", "base": "@review"}
            """
        let config = Harness.testConfig()
        let entries = try Manifest.parse(Array(manifest.utf8), file: "dag.jsonl", config: config)
        var options = BatchRun.Options(resultsDirectory: folder)
        options.durable = false
        ProcessSetup.prepare()
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
        let summary = try BatchRun(entries: entries, config: config, launch: launch, options: options).run()
        #expect(summary.exitCode == 0 && summary.counts.completed == 3, "\(summary.counts)")
        var tasks: [String: TaskSnapshot] = [:]
        for row in summary.rows { tasks[row.snapshot.description] = row.snapshot }
        let implement = try #require(tasks["implement"]), review = try #require(tasks["review"]), fix = try #require(tasks["fix"])
        #expect((review.startedMs ?? 0) >= (implement.endedMs ?? .max) && (fix.startedMs ?? 0) >= (review.endedMs ?? .max), "in order")
        #expect(readText(folder + "/tasks/\(review.id)/result.md") == "the feature\nreview of: implemented feature.txt")
        let implemented = try #require(try readJSON(folder + "/tasks/\(implement.id)/task.json")["worktree"]?.objectValue)
        let reviewed = try #require(try readJSON(folder + "/tasks/\(review.id)/task.json")["worktree"]?.objectValue)
        #expect(reviewed["base"] == implemented["head"], "the reviewer's branch starts at the implementer's")
        #expect(repo.output("show", "drover/\(fix.id):feature.txt") == "the feature" && repo.output("show", "drover/\(fix.id):fix.txt") == "fixed")
        #expect(repo.status == "" && repo.worktrees == 1)
    }

    @Test func aLaunchWhoseBaseNamesATaskOutsideAfterIsRefused() throws {
        let repo = try TestRepository()
        let harness = try Harness()
        let first = try harness.submit(command: ["/bin/true"])
        #expect(throws: SubmitError.self) {
            try harness.submit(command: ["/bin/true"], Self.worktree(repo) { $0.worktree.base = "@" + first })
        }
        harness.run(until: [first])
    }

    /// Recovery touches only a folder git registered: a `.git` file pointing at a repository
    /// that does not point back is left alone, and the repository is not written.
    @Test func recoveryFinishesOnlyAWorktreeGitRegistered() throws {
        let repo = try TestRepository()
        let victim = try TestRepository()
        let loop = EventLoop()
        let state = try temporaryFolder()
        defer { removeTree(state) }
        let store = try ResultStore(loop: loop, root: state, durable: false)
        defer { store.close() }
        func lostTask(_ id: String) -> TaskSnapshot {
            var snapshot = TaskSnapshot(id: id, sessionID: "ses_000000aa", agent: "explore", provider: "mock", model: nil, key: "explore",
                                        description: "lost work", prompt: "p", createdMs: 1, ttlMs: 0, pool: "provider:mock")
            snapshot.status = .error
            snapshot.reason = .lost
            return snapshot
        }
        // A real worktree of a lost task, with uncommitted work.
        let real = "bg_000000a1", forged = "bg_000000a2"
        var made = lostTask(real)
        made.extra["worktree"] = ["repo": .string(repo.path), "branch": .string("drover/\(real)"), "base": .string(repo.head)]
        repo.run("worktree", "add", "-q", "-b", "drover/\(real)", state + "/tasks/\(real)/work", repo.head)
        try FileSystem.writeFile(state + "/tasks/\(real)/work/left.txt", Array("left\n".utf8))
        // A forged one: its .git file names the victim's git folder, which knows nothing of it.
        try FileSystem.makeDirectories(state + "/tasks/\(forged)/work")
        try FileSystem.writeFile(state + "/tasks/\(forged)/work/.git", Array("gitdir: \(victim.path)/.git\n".utf8))
        try FileSystem.writeFile(state + "/tasks/\(forged)/work/evil.txt", Array("x\n".utf8))
        var forgedTask = lostTask(forged)
        forgedTask.extra["worktree"] = ["repo": .string(victim.path), "branch": .string("drover/\(forged)"), "base": .string(victim.head)]
        let victimHead = victim.head
        var notes: [String] = []
        let finished = WorktreeRecovery.finish([made, forgedTask], store: store, notes: &notes)
        let record = try #require(finished[0].extra["worktree"]?.objectValue)
        #expect(record["files_changed"] == 1 && record["head"] == .string(repo.output("rev-parse", "drover/\(real)")), "\(record)")
        #expect(repo.output("show", "drover/\(real):left.txt") == "left")
        #expect(!FileSystem.exists(state + "/tasks/\(real)/work") && repo.worktrees == 1, "removed and pruned")
        #expect(finished[1].extra["worktree"] == forgedTask.extra["worktree"], "the forged one is untouched")
        #expect(victim.head == victimHead && victim.droverBranches.isEmpty && victim.status == "")
        #expect(FileSystem.exists(state + "/tasks/\(forged)/work/evil.txt"))
        #expect(notes.count == 1 && notes[0].contains(real), "\(notes)")
    }
}

@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A repository and a state folder holding ended worktree tasks made by hand, as drover
/// leaves them (SPEC section 13): a branch drover/<id> with the task's commits, changes.diff
/// and a task.json with its `worktree` record; the worktree folder removed unless kept.
final class WorktreeFixture {
    let folder: String
    var repo: String { folder + "/repo" }
    var state: String { folder + "/state" }
    /// No system or global git config: the tests decide whether the user has an identity.
    let environment: [String: String]
    let git: Git

    init(userIdentity: Bool = true) throws {
        folder = try temporaryFolder()
        var environment = ProcessEnvironment.current()
        environment["HOME"] = folder
        environment["XDG_CONFIG_HOME"] = folder
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        self.environment = environment
        guard let git = Git(environment: environment) else { throw TestFailure("git is not on PATH") }
        self.git = git
        try FileSystem.makeDirectories(state + "/tasks")
        try run(["init", "-q", "-b", "main", repo], in: folder)
        if userIdentity {
            try run(["config", "user.name", "Tester"])
            try run(["config", "user.email", "tester@example.com"])
        }
        try write("shared.txt", "one\ntwo\nthree\n")
        try run(["add", "-A"])
        try run(["commit", "-q", "-m", "start"], environment: Git.identity)
    }

    deinit { removeTree(folder) }

    /// git in the repository (or `directory`); throws with git's message when it fails.
    @discardableResult
    func run(_ arguments: [String], in directory: String? = nil, environment: [String] = []) throws -> String {
        let result = git.runNow(arguments, in: directory ?? repo, extraEnvironment: environment)
        guard result.succeeded else { throw TestFailure("git \(arguments.joined(separator: " ")): \(result.message)") }
        return result.text
    }

    func succeeds(_ arguments: [String]) -> Bool { git.runNow(arguments, in: repo).succeeded }

    func write(_ name: String, _ text: String, in directory: String? = nil) throws {
        try FileSystem.writeFile((directory ?? repo) + "/" + name, Array(text.utf8))
    }

    func taskFolder(_ id: String) -> String { state + "/tasks/" + id }

    /// An ended task whose worker wrote `files` (one commit per element of `commits`) on its
    /// branch from the repository's HEAD.
    @discardableResult
    func makeTask(_ id: String, description: String = "a change", commits: [[String: String]], keepWorktree: Bool = false) throws -> String {
        let work = taskFolder(id) + "/work"
        try FileSystem.makeDirectories(taskFolder(id))
        let base = try run(["rev-parse", "HEAD"])
        try run(["worktree", "add", "-q", "-b", "drover/" + id, work, base])
        for files in commits {
            for (name, text) in files.sorted(by: { $0.key < $1.key }) { try write(name, text, in: work) }
            try run(["add", "-A"], in: work)
            try run(["commit", "-q", "-m", "\(description) (\(id))"], in: work, environment: Git.identity)
        }
        let head = try run(["rev-parse", "HEAD"], in: work)
        let diff = git.runNow(["diff", "--binary", base, head], in: repo)
        try FileSystem.writeFile(taskFolder(id) + "/changes.diff", diff.output)
        var files = 0, insertions = 0, deletions = 0
        for line in try run(["diff", "--numstat", base, head]).split(separator: "\n") {
            let fields = line.split(separator: "\t")
            files += 1
            insertions += Int(fields[0]) ?? 0
            deletions += Int(fields[1]) ?? 0
        }
        if !keepWorktree { try run(["worktree", "remove", "--force", work]) }
        var record: JSONObject = [
            "repo": .string(repo), "branch": .string("drover/" + id), "base": .string(base), "head": .string(head),
            "files_changed": JSONValue(files), "insertions": JSONValue(insertions), "deletions": JSONValue(deletions),
        ]
        if keepWorktree { record["path"] = .string(work) }
        try writeTask(id, description: description, worktree: record)
        return head
    }

    /// A task.json of an ended (or, with `status`, another) task.
    func writeTask(_ id: String, description: String = "a change", status: TaskStatus = .completed, worktree: JSONObject?) throws {
        var snapshot = TaskSnapshot(id: id, sessionID: TaskIdentifiers.newSessionID(), agent: "explore", provider: nil, model: nil, key: "explore",
                                    description: description, prompt: "change things", createdMs: Clock.wallMs() - 2000, ttlMs: 0, pool: "explore")
        snapshot.status = status
        snapshot.attempt = 1
        snapshot.startedMs = Clock.wallMs() - 1000
        if status.isTerminal {
            snapshot.reason = status == .completed ? .result : .exitCode
            snapshot.endedMs = Clock.wallMs()
        }
        if let worktree { snapshot.extra["worktree"] = .object(worktree) }
        try FileSystem.makeDirectories(taskFolder(id))
        var bytes: [UInt8] = []
        JSONWriter.writeObject(snapshot.json(), into: &bytes)
        try FileSystem.writeFile(taskFolder(id) + "/task.json", bytes + [0x0A])
    }

    /// `drover ARGS --state-dir STATE` under this fixture's git config.
    func drover(_ arguments: [String]) throws -> CommandResult {
        try runDrover(arguments + ["--state-dir", state], in: folder,
                      environment: ["HOME=\(folder)", "XDG_CONFIG_HOME=\(folder)", "GIT_CONFIG_NOSYSTEM=1"])
    }

    /// Nothing staged or modified, on main, no merge under way.
    func expectClean(head: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try run(["status", "--porcelain"]) == "", sourceLocation: sourceLocation)
        #expect(try run(["symbolic-ref", "HEAD"]) == "refs/heads/main", sourceLocation: sourceLocation)
        #expect(!succeeds(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"]), sourceLocation: sourceLocation)
        if let head { #expect(try run(["rev-parse", "HEAD"]) == head, sourceLocation: sourceLocation) }
    }
}

@Suite struct WorktreeCommandTests {
    @Test func diffPrintsTheChangeAndStatItsNumbers() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_0000000a", commits: [["new.txt": "alpha\nbeta\n", "shared.txt": "one\n2\nthree\n"]])
        let diff = try f.drover(["diff", "bg_0000000a"])
        #expect(diff.status == 0, "\(diff.stderr)")
        #expect(diff.stdout == readText(f.taskFolder("bg_0000000a") + "/changes.diff"))
        #expect(diff.stdout.contains("+alpha\n") && diff.stdout.contains("-two\n+2\n"))

        let stat = try f.drover(["diff", "bg_0000000a", "--stat"])
        #expect(stat.status == 0, "\(stat.stderr)")
        #expect(stat.stdout.contains("new.txt") && stat.stdout.contains("shared.txt"))
        #expect(stat.stdout.contains("2 files changed, 3 insertions(+), 1 deletion(-)"), "\(stat.stdout)")

        let json = try f.drover(["diff", "bg_0000000a", "--stat", "--json"])
        let document = try parseObject(json.stdout)
        #expect(document["branch"] == "drover/bg_0000000a")
        #expect(document["files_changed"] == 2 && document["insertions"] == 3 && document["deletions"] == 1)
    }

    @Test func threeBranchesOnDifferentFilesAllApply() throws {
        // No identity of the user's own: the merge commits are made as drover.
        let f = try WorktreeFixture(userIdentity: false)
        let ids = ["bg_000000b1", "bg_000000b2", "bg_000000b3"]
        for (n, id) in ids.enumerated() { try f.makeTask(id, description: "task \(n)", commits: [["file\(n).txt": "from \(id)\n"]]) }
        for id in ids {
            let applied = try f.drover(["apply", id])
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(applied.stdout.contains("Applied drover/\(id) to main"))
        }
        for (n, id) in ids.enumerated() { #expect(readText(f.repo + "/file\(n).txt") == "from \(id)\n") }
        try f.expectClean()
        #expect(try f.run(["log", "-1", "--format=%s|%an"]) == "drover: apply bg_000000b3 (task 2)|drover")
        #expect(try f.run(["rev-list", "--count", "--merges", "HEAD"]) == "2")  // the first was a fast-forward
    }

    @Test func aConflictExitsOneAndLeavesTheRepositoryAsItWas() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000c1", commits: [["shared.txt": "one\nmine\nthree\n"]])
        try f.makeTask("bg_000000c2", commits: [["shared.txt": "one\nyours\nthree\n"]])
        let first = try f.drover(["apply", "bg_000000c1", "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let head = try f.run(["rev-parse", "HEAD"])
        let answer = try parseObject(first.stdout)
        #expect(answer["task_id"] == "bg_000000c1" && answer["branch"] == "drover/bg_000000c1" && answer["merged"] == true)
        #expect(answer["commit"]?.stringValue == head)

        let second = try f.drover(["apply", "bg_000000c2"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("CONFLICT (content): Merge conflict in shared.txt"), "\(second.stderr)")
        #expect(second.stderr.contains("Conflicting files: shared.txt"))
        try f.expectClean(head: head)
        #expect(readText(f.repo + "/shared.txt") == "one\nmine\nthree\n")
        // --squash finds it as well.
        #expect(try f.drover(["apply", "bg_000000c2", "--squash"]).status == 1)
        try f.expectClean(head: head)
    }

    @Test func aMergeGitRefusesIsReportedAndUndone() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000d1", commits: [["shared.txt": "one\ntask\nthree\n"]])
        try f.makeTask("bg_000000d2", commits: [["other.txt": "x\n"]])
        #expect(try f.drover(["apply", "bg_000000d2"]).status == 0)
        let head = try f.run(["rev-parse", "HEAD"])
        // The user's own uncommitted edit of the file the task changed.
        try f.write("shared.txt", "one\nlocal\nthree\n")
        for squash in [false, true] {
            let refused = try f.drover(["apply", "bg_000000d1"] + (squash ? ["--squash"] : []))
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("would be overwritten by merge"), "\(refused.stderr)")
            #expect(readText(f.repo + "/shared.txt") == "one\nlocal\nthree\n")
            #expect(try f.run(["status", "--porcelain"]) == " M shared.txt")
            #expect(try f.run(["rev-parse", "HEAD"]) == head)
            #expect(!f.succeeds(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"]))
        }
    }

    @Test func aMergeCommitRefusedByAHookIsAborted() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000d3", commits: [["m.txt": "m\n"]])
        try f.makeTask("bg_000000d4", commits: [["n.txt": "n\n"]])
        #expect(try f.drover(["apply", "bg_000000d3"]).status == 0)
        let head = try f.run(["rev-parse", "HEAD"])
        // git merges into the index and work tree, sets MERGE_HEAD, then the hook says no.
        let hook = f.repo + "/.git/hooks/pre-merge-commit"
        try FileSystem.writeFile(hook, Array("#!/bin/sh\necho 'no merges today' >&2\nexit 1\n".utf8), mode: 0o700)
        let refused = try f.drover(["apply", "bg_000000d4"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("no merges today"), "\(refused.stderr)")
        try f.expectClean(head: head)
        #expect(!FileSystem.exists(f.repo + "/n.txt"))
    }

    @Test func squashMakesExactlyOneCommit() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000e1", description: "two steps", commits: [["a.txt": "a\n"], ["b.txt": "b\n"]])
        try f.makeTask("bg_000000e2", commits: [["c.txt": "c\n"]])
        #expect(try f.drover(["apply", "bg_000000e2"]).status == 0)
        let before = try f.run(["rev-parse", "HEAD"])
        let count = try #require(Int(try f.run(["rev-list", "--count", "HEAD"])))

        let squashed = try f.drover(["apply", "bg_000000e1", "--squash"])
        #expect(squashed.status == 0, "\(squashed.stderr)")
        #expect(try f.run(["rev-list", "--count", "HEAD"]) == String(count + 1))
        #expect(try f.run(["rev-parse", "HEAD^"]) == before)
        #expect(try f.run(["rev-list", "--count", "--merges", "HEAD"]) == "0")
        #expect(try f.run(["log", "-1", "--format=%s|%an"]) == "drover: apply bg_000000e1 (two steps)|Tester")
        #expect(readText(f.repo + "/a.txt") == "a\n" && readText(f.repo + "/b.txt") == "b\n")
        try f.expectClean()

        // The change is in HEAD: applying again, either way, does nothing.
        let head = try f.run(["rev-parse", "HEAD"])
        for again in [["--squash"], []] {
            let repeated = try f.drover(["apply", "bg_000000e1"] + again)
            #expect(repeated.status == 0, "\(repeated.stderr)")
            #expect(repeated.stdout.contains("already applied"))
            try f.expectClean(head: head)
        }
    }

    @Test func aSquashWhoseCommitFailsIsUndone() throws {
        let f = try WorktreeFixture(userIdentity: false)
        try f.makeTask("bg_000000e3", commits: [["s.txt": "s\n"]])
        let head = try f.run(["rev-parse", "HEAD"])
        let hook = f.repo + "/.git/hooks/pre-commit"
        try FileSystem.writeFile(hook, Array("#!/bin/sh\necho 'refused by the hook' >&2\nexit 1\n".utf8), mode: 0o700)
        let refused = try f.drover(["apply", "bg_000000e3", "--squash"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refused by the hook"), "\(refused.stderr)")
        try f.expectClean(head: head)
        #expect(!FileSystem.exists(f.repo + "/s.txt") && !FileSystem.exists(f.repo + "/.git/SQUASH_MSG"))
        unlink(hook)
        // Without an identity of the user's, the squash commit is drover's.
        #expect(try f.drover(["apply", "bg_000000e3", "--squash"]).status == 0)
        #expect(try f.run(["log", "-1", "--format=%an <%ae>"]) == "drover <drover@localhost>")
    }

    @Test func applyingTwiceSaysItIsAlreadyApplied() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000f1", commits: [["f.txt": "f\n"]])
        #expect(try f.drover(["apply", "bg_000000f1"]).status == 0)
        let head = try f.run(["rev-parse", "HEAD"])
        let again = try f.drover(["apply", "bg_000000f1", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let answer = try parseObject(again.stdout)
        #expect(answer["already_applied"] == true && answer["commit"]?.stringValue == head)
        let text = try f.drover(["apply", "bg_000000f1"])
        #expect(text.stdout.contains("drover/bg_000000f1 is already applied to main"))
        try f.expectClean(head: head)
    }

    @Test func applyRefusesADetachedHead() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000f2", commits: [["f.txt": "f\n"]])
        try f.run(["checkout", "-q", "--detach"])
        let refused = try f.drover(["apply", "bg_000000f2"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("detached HEAD"), "\(refused.stderr)")
        #expect(!FileSystem.exists(f.repo + "/f.txt"))
    }

    @Test func discardDeletesTheBranchAndAKeptWorktree() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000a1", commits: [["k.txt": "kept\n"]], keepWorktree: true)
        try f.makeTask("bg_000000a2", commits: [["r.txt": "removed\n"]])
        let work = f.taskFolder("bg_000000a1") + "/work"
        #expect(FileSystem.isDirectory(work))

        for id in ["bg_000000a1", "bg_000000a2"] {
            let discarded = try f.drover(["discard", id])
            #expect(discarded.status == 0, "\(discarded.stderr)")
            #expect(discarded.stdout.contains("Deleted the branch drover/\(id)"))
            #expect(!f.succeeds(["rev-parse", "--verify", "--quiet", "refs/heads/drover/\(id)"]))
            let record = try #require(try readJSON(f.taskFolder(id) + "/task.json")["worktree"]?.objectValue)
            #expect(record["discarded_at"]?.stringValue != nil && record["path"] == nil)
        }
        #expect(!FileSystem.exists(work))
        #expect(!(try f.run(["worktree", "list", "--porcelain"])).contains(work))

        // The change can still be read; it cannot be applied; discarding again is no error.
        let stat = try f.drover(["diff", "bg_000000a1", "--stat"])
        #expect(stat.status == 0 && stat.stdout.contains("1 file changed"), "\(stat.stderr)")
        let apply = try f.drover(["apply", "bg_000000a1"])
        #expect(apply.status == 1 && apply.stderr.contains("is not in"), "\(apply.stderr)")
        let again = try f.drover(["discard", "bg_000000a1"])
        #expect(again.status == 0 && again.stdout.contains("already gone"))
        try f.expectClean()
    }

    @Test func unknownTasksAndTasksWithoutAWorktreeAreRefused() throws {
        let f = try WorktreeFixture()
        let unknown = try f.drover(["diff", "bg_00000bad"])
        #expect(unknown.status == 6 && unknown.stderr.contains("no such task: bg_00000bad"), "\(unknown.stderr)")
        let invalid = try f.drover(["apply", "../x"])
        #expect(invalid.status == 2 && invalid.stderr.contains("is not a task id"))

        try f.writeTask("bg_00000001", worktree: nil)
        for command in ["diff", "apply", "discard"] {
            let plain = try f.drover([command, "bg_00000001"])
            #expect(plain.status == 2)
            #expect(plain.stderr.contains("bg_00000001 has no worktree"), "\(plain.stderr)")
        }

        let base = try f.run(["rev-parse", "HEAD"])
        try f.run(["branch", "drover/bg_00000002"])
        let running: JSONObject = ["repo": .string(f.repo), "branch": "drover/bg_00000002", "base": .string(base), "path": "/nowhere"]
        try f.writeTask("bg_00000002", status: .running, worktree: running)
        let refused = try f.drover(["discard", "bg_00000002"])
        #expect(refused.status == 3 && refused.stderr.contains("bg_00000002 is running"), "\(refused.stderr)")
        #expect(f.succeeds(["rev-parse", "--verify", "--quiet", "refs/heads/drover/bg_00000002"]))
    }

    @Test func aRecordNamingAnotherBranchOrARelativeRepositoryIsNotActedOn() throws {
        let f = try WorktreeFixture()
        let base = try f.run(["rev-parse", "HEAD"])
        try f.writeTask("bg_00000003", worktree: ["repo": .string(f.repo), "branch": "main", "base": .string(base), "head": .string(base)])
        let branch = try f.drover(["discard", "bg_00000003"])
        #expect(branch.status == 2 && branch.stderr.contains("not drover/bg_00000003"), "\(branch.stderr)")
        #expect(f.succeeds(["rev-parse", "--verify", "--quiet", "refs/heads/main"]))
        try f.writeTask("bg_00000004", worktree: ["repo": "repo", "branch": "drover/bg_00000004", "base": .string(base), "head": .string(base)])
        let relative = try f.drover(["apply", "bg_00000004"])
        #expect(relative.status == 2 && relative.stderr.contains("not an absolute path"), "\(relative.stderr)")
    }

    @Test func aRunResultsFolderIsReadWithResults() throws {
        let f = try WorktreeFixture()
        try f.makeTask("bg_000000ab", commits: [["r.txt": "r\n"]])
        // The same layout under another name, as `drover run --results DIR` writes it.
        #expect(rename(f.state, f.folder + "/results") == 0)
        let stat = try runDrover(["diff", "bg_000000ab", "--stat", "--results", "results"], in: f.folder)
        #expect(stat.status == 0 && stat.stdout.contains("1 file changed"), "\(stat.stderr)")
        let both = try runDrover(["diff", "bg_000000ab", "--results", "results", "--state-dir", "x"], in: f.folder)
        #expect(both.status == 2)
    }

    @Test func statTotalsCountBinaryFilesWithoutLines() {
        let stat = WorktreeChange.stat(text: " x | 2 +-", numstat: "1\t1\tx\n-\t-\tpicture.png\n10\t0\tnew file.txt")
        #expect(stat.filesChanged == 3 && stat.insertions == 11 && stat.deletions == 1)
        #expect(WorktreeChange.conflictReport("abc\nshared.txt\n\nAuto-merging shared.txt\nCONFLICT (content): Merge conflict in shared.txt")
            == "CONFLICT (content): Merge conflict in shared.txt\nConflicting files: shared.txt")
    }
}

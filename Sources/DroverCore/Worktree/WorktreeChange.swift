import DroverWire
import Glibc

/// What an ended worktree task changed (SPEC section 13), read from its task.json and
/// changes.diff, and what the user does with it: look at it, merge its branch into the
/// repository, or throw it away. No command-line concerns: each failure carries the exit
/// status SPEC section 7 gives it.
public struct WorktreeChange {
    /// task.json's `worktree` member.
    public struct Record: Sendable, Equatable {
        public var repo: String
        public var branch: String
        public var base: String
        /// Set once the task has ended.
        public var head: String?
        public var filesChanged: Int?
        public var insertions: Int?
        public var deletions: Int?
        /// The worktree folder, while it exists (running, or kept with keepWorktree).
        public var path: String?
        /// What went wrong while committing or removing the worktree.
        public var error: String?
        /// When `drover discard` deleted the branch.
        public var discardedAt: String?

        public init?(json object: JSONObject) {
            guard let repo = object["repo"]?.stringValue, let branch = object["branch"]?.stringValue,
                  let base = object["base"]?.stringValue
            else { return nil }
            self.repo = repo
            self.branch = branch
            self.base = base
            head = object["head"]?.stringValue
            filesChanged = object["files_changed"]?.intValue
            insertions = object["insertions"]?.intValue
            deletions = object["deletions"]?.intValue
            path = object["path"]?.stringValue
            error = object["error"]?.stringValue
            discardedAt = object["discarded_at"]?.stringValue
        }
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public enum Kind: Sendable, Equatable {
            /// A bad id, a task without a worktree, a record drover will not act on.
            case usage
            case unknownTask
            /// The task has not ended, so its change is not known yet.
            case notEnded
            /// git refused, or found a conflict; nothing was changed.
            case refused
        }

        public let kind: Kind
        public let message: String
        public var description: String { message }

        /// SPEC section 7: 2 usage, 6 no such task, 3 not terminal yet, 1 the operation failed.
        public var exitCode: Int32 {
            switch kind {
            case .usage: 2
            case .unknownTask: 6
            case .notEnded: 3
            case .refused: 1
            }
        }

        init(_ kind: Kind, _ message: String) {
            self.kind = kind
            self.message = message
        }
    }

    /// A diff stat: git's text and its totals.
    public struct Stat: Sendable, Equatable {
        public var text: String
        public var filesChanged: Int
        public var insertions: Int
        public var deletions: Int
    }

    public struct Applied: Sendable, Equatable {
        /// HEAD of the repository afterwards.
        public var commit: String
        /// The repository's checked-out branch (refs/heads/ left off).
        public var into: String
        /// HEAD already had the change: nothing was done.
        public var alreadyApplied: Bool
        public var fastForward: Bool
        public var squashed: Bool
    }

    public struct Discarded: Sendable, Equatable {
        /// Worktree folders removed.
        public var removedWorktrees: [String]
        /// The commit the deleted branch pointed at; nil when it was already gone.
        public var deletedBranchAt: String?
        /// Why task.json could not be updated (the branch is deleted all the same).
        public var recordError: String?
    }

    public let taskID: String
    public let description: String
    public let status: TaskStatus
    public let record: Record
    /// The state or results folder the task is in.
    public let folder: SafeFolder
    let git: Git

    var taskFolder: String { "tasks/" + taskID }
    var branchRef: String { "refs/heads/" + record.branch }

    /// Reads task `taskID` from the state (or `drover run` results) folder `root`: refuses an
    /// invalid id, an unknown task, one that has not ended, and one without a worktree record
    /// that names an absolute repository path and the branch `drover/<id>`.
    public static func load(root: String, taskID: String, environment: [String: String] = ProcessEnvironment.current()) throws(Failure) -> WorktreeChange {
        guard TaskIdentifiers.isTaskID(taskID) else {
            throw Failure(.usage, "\"\(taskID)\" is not a task id (bg_ and 8 hex digits)")
        }
        let root = FileSystem.absolute(root)
        guard FileSystem.exists(root) else { throw Failure(.unknownTask, "no such task: \(taskID) (there is no folder \(root))") }
        let folder: SafeFolder
        do {
            try FolderPermissions.check(path: root)
            folder = try SafeFolder(root: root)
        } catch {
            throw Failure(.usage, "\(error)")
        }
        let bytes: [UInt8]
        do {
            bytes = try folder.read("tasks/\(taskID)/task.json")
        } catch {
            if error.code == ENOENT { throw Failure(.unknownTask, "no such task: \(taskID) in \(root)") }
            throw Failure(.usage, error.description)
        }
        let task: JSONObject
        do {
            guard let object = try JSONParser.parse(bytes).value.objectValue else { throw Failure(.usage, "\(folder.fullPath("tasks/\(taskID)/task.json")) is not a JSON object") }
            task = object
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(.usage, "\(folder.fullPath("tasks/\(taskID)/task.json")): \(error)")
        }
        guard let status = task["status"]?.stringValue.flatMap(TaskStatus.init(rawValue:)) else {
            throw Failure(.usage, "\(folder.fullPath("tasks/\(taskID)/task.json")) has no valid status")
        }
        guard status.isTerminal else {
            throw Failure(.notEnded, "\(taskID) is \(status.rawValue): its change is known once it has ended (drover wait \(taskID))")
        }
        guard let member = task["worktree"], !member.isNull else {
            throw Failure(.usage, "\(taskID) has no worktree: it did not run with \"workdir\": \"worktree\"")
        }
        guard let object = member.objectValue, let record = Record(json: object) else {
            throw Failure(.usage, "\(taskID)'s worktree record in task.json lacks repo, branch or base")
        }
        // The record decides which repository drover runs git in and which branch it deletes:
        // only the shape drover itself writes is acted on.
        guard record.repo.hasPrefix("/"), !record.repo.contains("\0"), !record.repo.contains("\n") else {
            throw Failure(.usage, "\(taskID)'s worktree repo \"\(record.repo)\" is not an absolute path: refusing to act on it")
        }
        guard record.branch == "drover/" + taskID else {
            throw Failure(.usage, "\(taskID)'s worktree branch is \"\(record.branch)\", not drover/\(taskID): refusing to act on it")
        }
        guard isObjectName(record.base), record.head.map(isObjectName) ?? true else {
            throw Failure(.usage, "\(taskID)'s worktree base or head is not a commit id")
        }
        var gitEnvironment = environment
        // A caller inside a git hook has these set; they would point git at another repository.
        for name in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX"] {
            gitEnvironment[name] = nil
        }
        guard let git = Git(environment: gitEnvironment) else { throw Failure(.usage, Git.notFound) }
        return WorktreeChange(taskID: taskID, description: task["description"]?.stringValue ?? "", status: status, record: record, folder: folder, git: git)
    }

    static func isObjectName(_ text: String) -> Bool {
        (text.count == 40 || text.count == 64) && text.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    // MARK: diff

    /// changes.diff as drover wrote it (`git diff --binary` base to head); when the file is
    /// missing, the same diff from the repository if it still has both commits.
    public func diff() throws(Failure) -> [UInt8] {
        do {
            return try folder.read(taskFolder + "/changes.diff")
        } catch {
            guard error.code == ENOENT, let head = record.head else { throw Failure(.refused, error.description) }
            try checkRepository()
            let result = git.runNow(["diff", "--binary", record.base, head], in: record.repo)
            guard result.succeeded else { throw Failure(.refused, "\(taskID) has no changes.diff, and git cannot make it: \(result.message)") }
            return result.output
        }
    }

    /// The diff stat of changes.diff. `git apply --stat` reads the patch alone, so this works
    /// once the branch is deleted, the repository moved, or outside any repository.
    public func stat() throws(Failure) -> Stat {
        let name = taskFolder + "/changes.diff"
        let status: SafeFolder.Status
        do {
            status = try folder.status(name)
        } catch {
            if error.code == ENOENT, let head = record.head { return try statFromRepository(head: head) }
            throw Failure(.refused, error.description)
        }
        // The path goes to git, which would follow a link planted in its place.
        guard status.kind == .file else { throw Failure(.refused, "\(folder.fullPath(name)) is not a regular file") }
        guard status.size > 0 else { return Stat(text: " 0 files changed", filesChanged: 0, insertions: 0, deletions: 0) }
        let directory = folder.fullPath(taskFolder)
        let text = git.runNow(["apply", "--stat", "changes.diff"], in: directory)
        let numbers = git.runNow(["apply", "--numstat", "changes.diff"], in: directory)
        guard text.succeeded, numbers.succeeded else { throw Failure(.refused, "git cannot read \(folder.fullPath(name)): \(text.succeeded ? numbers.message : text.message)") }
        return Self.stat(text: text.text, numstat: numbers.text)
    }

    private func statFromRepository(head: String) throws(Failure) -> Stat {
        try checkRepository()
        let text = git.runNow(["diff", "--stat", record.base, head], in: record.repo)
        let numbers = git.runNow(["diff", "--numstat", record.base, head], in: record.repo)
        guard text.succeeded, numbers.succeeded else {
            throw Failure(.refused, "\(taskID) has no changes.diff, and git cannot make it: \(text.succeeded ? numbers.message : text.message)")
        }
        return Self.stat(text: text.text, numstat: numbers.text)
    }

    /// Totals from `--numstat` lines ("added<TAB>deleted<TAB>path"; "-" for a binary file).
    static func stat(text: String, numstat: String) -> Stat {
        var stat = Stat(text: text.isEmpty ? " 0 files changed" : text, filesChanged: 0, insertions: 0, deletions: 0)
        for line in numstat.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            stat.filesChanged += 1
            stat.insertions += Int(fields[0]) ?? 0
            stat.deletions += Int(fields[1]) ?? 0
        }
        return stat
    }

    // MARK: apply

    /// The commit message of a merge or squash commit.
    public var commitMessage: String {
        let title = description.split(separator: "\n").first.map(String.init) ?? ""
        return title.isEmpty ? "drover: apply \(taskID)" : "drover: apply \(taskID) (\(title))"
    }

    /// Merges the task's branch into the branch checked out in its repository (a fast-forward
    /// when it can). A conflict is found first with `git merge-tree`, which touches neither
    /// work tree nor index; a merge git refuses anyway is undone, so a failure leaves the
    /// repository as it was. `squash`: the change as one new commit on that branch.
    public func apply(squash: Bool) throws(Failure) -> Applied {
        try checkRepository()
        let tip = git.runNow(["rev-parse", "--verify", "--quiet", branchRef + "^{commit}"], in: record.repo)
        guard tip.succeeded else {
            throw Failure(.refused, "the branch \(record.branch) is not in \(record.repo) (discarded, or deleted by hand)")
        }
        let checkedOut = git.runNow(["symbolic-ref", "--quiet", "HEAD"], in: record.repo)
        guard checkedOut.succeeded else {
            throw Failure(.refused, "\(record.repo) has a detached HEAD: check out the branch to apply \(record.branch) to, then run this again")
        }
        let currentRef = checkedOut.text
        let current = currentRef.hasPrefix("refs/heads/") ? String(currentRef.dropFirst("refs/heads/".count)) : currentRef
        guard currentRef != branchRef else {
            throw Failure(.refused, "\(record.repo) has \(record.branch) itself checked out: check out the branch to apply it to")
        }
        let before = git.runNow(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], in: record.repo)
        guard before.succeeded else { throw Failure(.refused, "\(current) in \(record.repo) has no commit yet") }

        let ancestor = git.runNow(["merge-base", "--is-ancestor", branchRef, "HEAD"], in: record.repo)
        if ancestor.status == 0 { return Applied(commit: before.text, into: current, alreadyApplied: true, fastForward: false, squashed: false) }
        guard ancestor.status == 1 else { throw Failure(.refused, ancestor.message) }

        let trial = git.runNow(["merge-tree", "--write-tree", "--name-only", "HEAD", branchRef], in: record.repo)
        if trial.status == 1 {
            throw Failure(.refused, "\(record.branch) conflicts with \(current) in \(record.repo); nothing was changed.\n" + Self.conflictReport(trial.text))
        }
        guard trial.succeeded else { throw Failure(.refused, trial.message) }
        // The same tree as HEAD: the change is there already (applied with --squash before).
        let mergedTree = trial.text.split(separator: "\n").first.map(String.init) ?? ""
        let headTree = git.runNow(["rev-parse", "HEAD^{tree}"], in: record.repo)
        if headTree.succeeded && headTree.text == mergedTree {
            return Applied(commit: before.text, into: current, alreadyApplied: true, fastForward: false, squashed: false)
        }

        let identity = hasIdentity() ? [] : Git.identity
        if squash {
            // A squash commit takes the whole index: the user's staged changes would go in too.
            let staged = git.runNow(["diff", "--cached", "--quiet"], in: record.repo)
            guard staged.status == 0 else {
                throw Failure(.refused, staged.status == 1 ? "\(record.repo) has staged changes: commit or unstage them first" : staged.message)
            }
            let merged = git.runNow(["merge", "--squash", branchRef], in: record.repo, extraEnvironment: identity)
            guard merged.succeeded else {
                undoSquash()
                throw Failure(.refused, merged.message)
            }
            let body = "Squashed from \(record.branch) at \(tip.text)."
            let committed = git.runNow(["commit", "--quiet", "-m", commitMessage, "-m", body], in: record.repo, extraEnvironment: identity)
            guard committed.succeeded else {
                undoSquash()
                throw Failure(.refused, committed.message)
            }
        } else {
            let merged = git.runNow(["merge", "--no-edit", "-m", commitMessage, branchRef], in: record.repo, extraEnvironment: identity)
            guard merged.succeeded else {
                if git.runNow(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"], in: record.repo).succeeded {
                    _ = git.runNow(["merge", "--abort"], in: record.repo)
                }
                throw Failure(.refused, merged.message)
            }
        }
        let after = git.runNow(["rev-parse", "HEAD"], in: record.repo)
        guard after.succeeded else { throw Failure(.refused, after.message) }
        return Applied(commit: after.text, into: current, alreadyApplied: false, fastForward: !squash && after.text == tip.text, squashed: squash)
    }

    /// "CONFLICT ..." lines from merge-tree's answer (tree id, conflicted files, a blank line,
    /// then its messages), and the conflicted files.
    static func conflictReport(_ output: String) -> String {
        let sections = output.split(separator: "\n", omittingEmptySubsequences: false)
        var files: [String] = []
        var messages: [String] = []
        var inMessages = false
        for line in sections.dropFirst() {
            if line.isEmpty { inMessages = true; continue }
            if inMessages {
                if line.hasPrefix("CONFLICT") { messages.append(String(line)) }
            } else if !files.contains(String(line)) {
                files.append(String(line))
            }
        }
        var report = messages
        if !files.isEmpty { report.append("Conflicting files: " + files.joined(separator: ", ")) }
        return report.joined(separator: "\n")
    }

    /// Whether git can make a commit as the user (else drover's identity is passed).
    private func hasIdentity() -> Bool {
        git.runNow(["var", "GIT_COMMITTER_IDENT"], in: record.repo).succeeded && git.runNow(["var", "GIT_AUTHOR_IDENT"], in: record.repo).succeeded
    }

    /// Puts index and work tree back after a failed squash (the index matched HEAD before it,
    /// and what the user had not staged is kept), and drops the message git left for it.
    private func undoSquash() {
        _ = git.runNow(["reset", "--merge"], in: record.repo)
        let message = git.runNow(["rev-parse", "--path-format=absolute", "--git-path", "SQUASH_MSG"], in: record.repo)
        if message.succeeded && !message.text.isEmpty { unlink(message.text) }
    }

    // MARK: discard

    /// Removes the task's worktree if git still lists it, deletes its branch, and notes that
    /// in task.json (replaced atomically).
    public func discard() throws(Failure) -> Discarded {
        try checkRepository()
        var removed: [String] = []
        let listed = git.runNow(["worktree", "list", "--porcelain"], in: record.repo)
        guard listed.succeeded else { throw Failure(.refused, listed.message) }
        let ours = Set([record.path, folder.fullPath(taskFolder + "/work")].compactMap { $0 })
        for line in listed.text.split(separator: "\n") where line.hasPrefix("worktree ") {
            let path = String(line.dropFirst("worktree ".count))
            // Only the task's own folder: a worktree the user made is not drover's to remove.
            guard ours.contains(path) || ours.contains(Self.resolved(path)) else { continue }
            let removal = git.runNow(["worktree", "remove", "--force", path], in: record.repo)
            guard removal.succeeded else { throw Failure(.refused, removal.message) }
            removed.append(path)
        }
        var deletedAt: String?
        let tip = git.runNow(["rev-parse", "--verify", "--quiet", branchRef + "^{commit}"], in: record.repo)
        if tip.succeeded {
            let deletion = git.runNow(["branch", "-D", record.branch], in: record.repo)
            guard deletion.succeeded else { throw Failure(.refused, deletion.message) }
            deletedAt = tip.text
        }
        return Discarded(removedWorktrees: removed, deletedBranchAt: deletedAt, recordError: noteDiscarded(removedPath: !removed.isEmpty))
    }

    /// Sets `worktree.discarded_at` (and drops `path` once that folder is gone) in task.json,
    /// read again just before so nothing else in it is lost. Returns what failed, if anything.
    private func noteDiscarded(removedPath: Bool) -> String? {
        let name = taskFolder + "/task.json"
        do {
            guard var task = try JSONParser.parse(try folder.read(name)).value.objectValue,
                  var worktree = task["worktree"]?.objectValue
            else { return "\(folder.fullPath(name)) changed under drover" }
            if removedPath || worktree["path"]?.stringValue.map({ !FileSystem.exists($0) }) == true { worktree["path"] = nil }
            worktree["discarded_at"] = .string(Clock.rfc3339(ms: Clock.wallMs()))
            task["worktree"] = .object(worktree)
            var bytes: [UInt8] = []
            JSONWriter.writeObject(task, into: &bytes)
            bytes.append(0x0A)
            try folder.replace(name, bytes)
            return nil
        } catch {
            return "\(error)"
        }
    }

    // MARK: the repository

    /// The record's repository must still be the top folder of a git work tree.
    func checkRepository() throws(Failure) {
        guard FileSystem.isDirectory(record.repo) else { throw Failure(.refused, "the repository \(record.repo) is gone") }
        let top = git.runNow(["rev-parse", "--show-toplevel"], in: record.repo)
        guard top.succeeded else { throw Failure(.refused, "\(record.repo) is not a git work tree: \(top.message)") }
        guard Self.resolved(top.text) == Self.resolved(record.repo) else {
            throw Failure(.refused, "\(record.repo) is not the top folder of a git work tree (that is \(top.text))")
        }
    }

    /// The path with links resolved (itself when that fails).
    static func resolved(_ path: String) -> String { FileSystem.realPath(path) ?? path }
}

import ArgumentParser
import DroverCore
import DroverWire
import Glibc

/// Options of the commands that work on a worktree task's result: they read the task's
/// folder directly, so they need no daemon.
struct WorktreeTaskOptions: ParsableArguments {
    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("results"), help: "A `drover run` results folder to find the task in, instead of the state folder.")
    var results: String?

    @Argument(help: "The task id (bg_...).") var id: String

    func validate() throws {
        if results != nil && common.stateDirectory != nil { throw ValidationError("give --state-dir or --results, not both") }
    }

    /// The state folder and a `drover run` results folder share one layout (SPEC section 6).
    var root: String { results.map(FileSystem.absolute) ?? StateFolder(explicit: common.stateDirectory, environment: ProcessEnvironment.current()).path }

    func load() throws -> WorktreeChange {
        do {
            return try WorktreeChange.load(root: root, taskID: id)
        } catch {
            throw fail(error)
        }
    }
}

/// Prints a failure as the other commands do and gives its exit status.
private func fail(_ failure: WorktreeChange.Failure) -> ExitCode {
    Terminal.error("drover: \(failure.message)")
    return ExitCode(failure.exitCode)
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Print the change a worktree task made (its changes.diff), or with --stat a diff stat.",
        discussion: "Works once the task has ended, also after its branch was applied or discarded. Exit status: 0, 2 no worktree, 3 not ended, 6 no such task.")

    @OptionGroup var task: WorktreeTaskOptions
    @Flag(help: "Files changed with their insertions and deletions, instead of the diff.") var stat = false

    func run() throws {
        let change = try task.load()
        let json = task.common.json
        do {
            if stat {
                let stat = try change.stat()
                if json {
                    return Terminal.out(JSONWriter.string([
                        "task_id": .string(change.taskID), "branch": .string(change.record.branch),
                        "files_changed": JSONValue(stat.filesChanged), "insertions": JSONValue(stat.insertions), "deletions": JSONValue(stat.deletions),
                        "stat": .string(stat.text),
                    ]))
                }
                return Terminal.out(stat.text)
            }
            let diff = try change.diff()
            if json {
                return Terminal.out(JSONWriter.string([
                    "task_id": .string(change.taskID), "branch": .string(change.record.branch), "base": .string(change.record.base),
                    "head": JSONValue(change.record.head), "diff": .string(String(decoding: diff, as: UTF8.self)),
                ]))
            }
            // The bytes as they are: a patch of a file that is not UTF-8 must still apply.
            writeAll(1, diff)
        } catch {
            throw fail(error)
        }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Merge a worktree task's branch into the branch checked out in its repository.",
        discussion: """
            A fast-forward when it can be, else a merge commit "drover: apply ID (description)"; --squash makes one \
            new commit instead. A conflict is found before anything is touched: exit 1 with git's message, the \
            repository left as it was. Exit status: 0 applied (or already applied), 1 a conflict or git refused, \
            2 no worktree, 3 not ended, 6 no such task.
            """)

    @OptionGroup var task: WorktreeTaskOptions
    @Flag(help: "Apply the change as one new commit (the task's description and id) instead of merging the branch.") var squash = false

    func run() throws {
        let change = try task.load()
        let applied: WorktreeChange.Applied
        do {
            applied = try change.apply(squash: squash)
        } catch {
            throw fail(error)
        }
        if task.common.json {
            return Terminal.out(JSONWriter.string([
                "task_id": .string(change.taskID), "branch": .string(change.record.branch), "merged": true, "commit": .string(applied.commit),
                "into": .string(applied.into), "already_applied": .bool(applied.alreadyApplied), "fast_forward": .bool(applied.fastForward),
                "squashed": .bool(applied.squashed),
            ]))
        }
        let short = String(applied.commit.prefix(12))
        if applied.alreadyApplied {
            Terminal.out("\(change.record.branch) is already applied to \(applied.into) in \(change.record.repo): nothing to do (HEAD \(short)).")
        } else if applied.squashed {
            Terminal.out("Applied \(change.taskID) to \(applied.into) in \(change.record.repo) as one commit \(short).")
        } else {
            let how = applied.fastForward ? "fast-forward" : "merge commit"
            Terminal.out("Applied \(change.record.branch) to \(applied.into) in \(change.record.repo) (\(how), HEAD \(short)).")
        }
    }
}

struct DiscardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discard",
        abstract: "Delete a worktree task's branch (and its worktree, if kept), throwing its change away.",
        discussion: "changes.diff stays in the task's folder. Exit status: 0, 1 git refused, 2 no worktree, 3 still running, 6 no such task.")

    @OptionGroup var task: WorktreeTaskOptions

    func run() throws {
        let change = try task.load()
        let discarded: WorktreeChange.Discarded
        do {
            discarded = try change.discard()
        } catch {
            throw fail(error)
        }
        if let problem = discarded.recordError { Terminal.error("drover: warning: task.json not updated: \(problem)") }
        if task.common.json {
            return Terminal.out(JSONWriter.string([
                "task_id": .string(change.taskID), "branch": .string(change.record.branch),
                "deleted": .bool(discarded.deletedBranchAt != nil), "was": JSONValue(discarded.deletedBranchAt),
                "removed_worktrees": .array(discarded.removedWorktrees.map { .string($0) }),
            ]))
        }
        for path in discarded.removedWorktrees { Terminal.out("Removed the worktree \(path).") }
        if let tip = discarded.deletedBranchAt {
            Terminal.out("Deleted the branch \(change.record.branch) (was \(tip.prefix(12))) in \(change.record.repo).")
        } else {
            Terminal.out("The branch \(change.record.branch) is already gone from \(change.record.repo).")
        }
    }
}

/// Writes all of `bytes` to `fd`, as they are.
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

import DroverWire
import Glibc

/// Worktrees of tasks lost in a crash (SPEC 13, 16): once their processes are gone, what
/// they left is committed on their branch, changes.diff written and the folder removed, as
/// at a normal end; then git's list of worktrees is pruned. Only a folder that git itself
/// registered is touched: its `.git` file names an admin folder of the repository whose
/// `gitdir` file names this folder back (task.json alone never makes drover write to a
/// repository).
public enum WorktreeRecovery {
    /// The lost tasks with their worktree record added where they had a worktree.
    public static func finish(_ lost: [TaskSnapshot], store: ResultStore, git: Git? = Git(), notes: inout [String]) -> [TaskSnapshot] {
        guard let git else { return lost }
        let step: GitStep = { arguments, directory, environment, then in
            then(git.runNow(arguments, in: directory, extraEnvironment: environment))
        }
        return lost.map { snapshot in
            let path = store.taskDirectory(snapshot.id) + "/work"
            guard snapshot.status.isTerminal, FileSystem.isDirectory(path), let repo = registeredRepository(of: path) else { return snapshot }
            // A batch row's snapshot is made again from its manifest: its task.json says what was made.
            let onDisk = (try? store.folder.read("tasks/\(snapshot.id)/task.json")).flatMap { try? JSONParser.parse($0).value.objectValue }
            let request = snapshot.extra["request"]?.objectValue
            let made = snapshot.extra["worktree"]?.objectValue ?? onDisk?["worktree"]?.objectValue
            guard let base = made?["base"]?.stringValue ?? request?["base"]?.stringValue, !base.hasPrefix("@"), !base.hasPrefix("-") else {
                notes.append("task \(snapshot.id): its worktree has no recorded base; left at \(path)")
                return snapshot
            }
            let plan = WorktreePlan(repo: repo, base: base, branch: WorktreePlan.branch(of: snapshot.id), path: path,
                                    commit: request?["commit"]?.boolValue ?? true, keep: request?["keepWorktree"]?.boolValue ?? false)
            var record = JSONValue.null
            WorktreeFinish(plan: plan, message: WorktreeFinish.message(description: snapshot.description, taskID: snapshot.id),
                           diffFile: store.taskDirectory(snapshot.id) + "/changes.diff", step: step, admin: step).run { record = $0 }
            _ = git.runNow(["worktree", "prune"], in: repo)
            var finished = snapshot
            finished.extra["worktree"] = record
            store.writeTask(finished)
            notes.append("task \(snapshot.id): its worktree was committed on \(plan.branch) and removed")
            return finished
        }
    }

    /// The repository's top folder, when git registered `path` as one of its worktrees.
    static func registeredRepository(of path: String) -> String? {
        guard let pointer = try? FileSystem.read(path + "/.git") else { return nil }
        let text = String(decoding: pointer, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard text.hasPrefix("gitdir: ") else { return nil }
        let admin = String(text.dropFirst("gitdir: ".count))
        guard let back = try? FileSystem.read(admin + "/gitdir"),
              let pointed = String(decoding: back, as: UTF8.self).split(separator: "\n").first.flatMap({ FileSystem.realPath(String($0)) }),
              let ours = FileSystem.realPath(path + "/.git"), pointed == ours else { return nil }
        // The admin folder is <repository>/.git/worktrees/<name>.
        let common = FileSystem.dirname(of: FileSystem.dirname(of: admin))
        guard FileSystem.basename(of: FileSystem.dirname(of: admin)) == "worktrees", FileSystem.basename(of: common) == ".git" else { return nil }
        return FileSystem.dirname(of: common)
    }
}

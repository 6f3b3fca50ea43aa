import DroverWire

/// One git command, run on a loop or at once; `then` gets what it did.
typealias GitStep = (_ arguments: [String], _ directory: String, _ environment: [String], _ then: @escaping (HelperResult) -> Void) -> Void

/// The end of a worktree task (SPEC 13): what the worker left uncommitted is committed on
/// its branch, changes.diff is written from the base to the branch's head, and the folder
/// is removed, the branch kept. The worktree stays when asked to, or when removing it
/// would lose work that is on no commit. The steps are the same on the supervisor's loop
/// and in recovery after a crash; `admin` runs the ones that change the repository's
/// list of worktrees, which git wants one at a time.
struct WorktreeFinish {
    var plan: WorktreePlan
    var message: String
    var diffFile: String
    var step: GitStep
    var admin: GitStep

    func run(then: @escaping (JSONValue) -> Void) {
        var problems: [String] = []
        let folderExists = FileSystem.isDirectory(plan.path)
        let finish = { (leftovers: Bool) in
            self.record(problems: problems, leftovers: leftovers, folderExists: folderExists, then: then)
        }
        guard folderExists else { return finish(false) }
        step(["status", "--porcelain"], plan.path, []) { status in
            guard status.succeeded else {
                problems.append("git status in the worktree failed: \(status.message)")
                return finish(true)
            }
            let dirty = !status.output.isEmpty
            guard dirty, plan.commit else { return finish(dirty) }
            step(["add", "-A"], plan.path, []) { added in
                guard added.succeeded else {
                    problems.append("git add failed: \(added.message)")
                    return finish(true)
                }
                step(["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message], plan.path, Git.identity) { committed in
                    if !committed.succeeded { problems.append("git commit failed: \(committed.message)") }
                    finish(!committed.succeeded)
                }
            }
        }
    }

    /// The branch's head, the diff and its figures, then the folder's removal.
    private func record(problems: [String], leftovers: Bool, folderExists: Bool, then: @escaping (JSONValue) -> Void) {
        var problems = problems
        step(["rev-parse", "--verify", "--end-of-options", "refs/heads/" + plan.branch], plan.repo, []) { head in
            var record: JSONObject = ["repo": .string(plan.repo), "branch": .string(plan.branch), "base": .string(plan.base)]
            guard head.succeeded, !head.text.isEmpty else {
                problems.append("the branch \(plan.branch) is gone: \(head.message)")
                record["error"] = .string(problems.joined(separator: "; "))
                if folderExists { record["path"] = .string(plan.path) }
                return then(.object(record))
            }
            record["head"] = .string(head.text)
            step(["diff", "--binary", "--output=" + diffFile, plan.base, head.text], plan.repo, []) { diff in
                if !diff.succeeded { problems.append("git diff failed: \(diff.message)") }
                step(["diff", "--shortstat", plan.base, head.text], plan.repo, []) { stat in
                    let figures = DiffStat(shortstat: stat.text)
                    record["files_changed"] = .number(Double(figures.files))
                    record["insertions"] = .number(Double(figures.insertions))
                    record["deletions"] = .number(Double(figures.deletions))
                    let done = { (kept: Bool) in
                        if kept { record["path"] = .string(plan.path) }
                        if leftovers { record["uncommitted"] = true }
                        if !problems.isEmpty { record["error"] = .string(problems.joined(separator: "; ")) }
                        then(.object(record))
                    }
                    guard folderExists, !plan.keep, !leftovers else { return done(folderExists) }
                    admin(["worktree", "remove", "--force", plan.path], plan.repo, []) { removed in
                        if !removed.succeeded { problems.append("git worktree remove failed: \(removed.message)") }
                        done(!removed.succeeded)
                    }
                }
            }
        }
    }

    /// The commit message of a task's leftovers: its description's first line, and its id.
    static func message(description: String, taskID: String) -> String {
        let title = description.split(separator: "\n").first.map { String($0.prefix(200)) } ?? ""
        return (title.isEmpty ? "drover task \(taskID)" : title) + "\n\ndrover task \(taskID)"
    }
}

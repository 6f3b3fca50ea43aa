import DroverWire

/// A worktree task's repository, branch and folder, decided when it is submitted.
struct WorktreePlan {
    /// The repository's top folder.
    var repo: String
    /// A commit (pinned at submit) or `@bg_...`, a dependency's branch head once it completed.
    var base: String
    var branch: String
    /// The worktree's folder: `tasks/<id>/work`.
    var path: String
    var commit: Bool
    var keep: Bool
    /// Why the worktree cannot be made (the repo or base did not resolve at submit).
    var problem: String?

    static func branch(of taskID: String) -> String { "drover/" + taskID }

    /// Resolves the repo's top folder and pins the base to a commit, with one `git rev-parse`.
    /// `request.worktree` comes back with both, so a restart or a restart of the task uses
    /// the same commit. A problem leaves the request as it was and is said at the start.
    static func pin(_ settings: WorktreeSettings, cwd: String, git: Git?) -> (settings: WorktreeSettings, problem: String?) {
        let repo = FileSystem.absolute(settings.repo ?? cwd)
        guard let git else { return (settings, "cannot make a worktree: \(Git.notFound)") }
        guard FileSystem.isDirectory(repo) else { return (settings, "repo \(repo) is not a folder") }
        var pinned = settings
        let base = settings.base ?? "HEAD"
        var arguments = ["rev-parse", "--show-toplevel"]
        if settings.baseTask == nil { arguments += ["--verify", "--end-of-options", base + "^{commit}"] }
        let answer = git.runNow(arguments, in: repo)
        let lines = answer.text.split(separator: "\n").map(String.init)
        guard let top = lines.first, top.hasPrefix("/") else {
            return (settings, "repo \(repo) is not inside a git work tree (git: \(answer.message))")
        }
        pinned.repo = top
        if settings.baseTask == nil {
            guard answer.succeeded, lines.count == 2 else {
                return (settings, "base \"\(base)\" does not resolve to a commit of \(top) (git: \(answer.message))")
            }
            pinned.base = lines[1]
        }
        return (pinned, nil)
    }

    /// Where in the worktree the worker runs: the cwd's place in the repository.
    static func workingFolder(worktree: String, repo: String, cwd: String) -> String {
        let inside = cwd.hasPrefix(repo + "/") ? String(cwd.dropFirst(repo.count)) : ""
        return worktree + inside
    }

    /// What task.json shows while the worktree exists.
    var runningRecord: JSONValue {
        ["repo": .string(repo), "branch": .string(branch), "base": .string(base), "path": .string(path)]
    }
}

/// The figures of `git diff --shortstat`.
struct DiffStat: Equatable {
    var files = 0
    var insertions = 0
    var deletions = 0

    /// " 3 files changed, 10 insertions(+), 2 deletions(-)", any part absent when zero.
    init(shortstat: String) {
        for part in shortstat.split(separator: ",") {
            let words = part.split(separator: " ")
            guard let count = words.first.flatMap({ Int($0) }), words.count > 1 else { continue }
            if words[1].hasPrefix("file") { files = count }
            else if words[1].hasPrefix("insertion") { insertions = count }
            else if words[1].hasPrefix("deletion") { deletions = count }
        }
    }
}

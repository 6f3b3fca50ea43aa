/// Where a task runs when it is not simply its `cwd` (SPEC 13).
public enum WorkdirMode: String, Sendable, Equatable {
    /// A fresh private folder under the task's folder.
    case task
    /// A git worktree on the branch `drover/<task_id>`, under the task's folder.
    case worktree
}

/// A worktree task's settings (agent or task; the task's win, member by member).
public struct WorktreeSettings: Sendable, Equatable {
    /// The repository (default: the task's cwd, which must be inside a git work tree).
    public var repo: String?
    /// What the branch starts from: a commit-ish of the repository (default `HEAD` at
    /// launch), or `@NAME` / `@bg_...`, a dependency's branch.
    public var base: String?
    /// Commit what the worker left uncommitted when the task ends (default true).
    public var commit: Bool?
    /// Keep the worktree folder after the end (default false: only the branch is kept).
    public var keepWorktree: Bool?

    public init(repo: String? = nil, base: String? = nil, commit: Bool? = nil, keepWorktree: Bool? = nil) {
        self.repo = repo
        self.base = base
        self.commit = commit
        self.keepWorktree = keepWorktree
    }

    public static let keys = ["repo", "base", "commit", "keepWorktree"]

    public var isEmpty: Bool { self == WorktreeSettings() }

    /// These settings, with `other`'s where these say nothing.
    public func over(_ other: WorktreeSettings) -> WorktreeSettings {
        WorktreeSettings(repo: repo ?? other.repo, base: base ?? other.base, commit: commit ?? other.commit,
                         keepWorktree: keepWorktree ?? other.keepWorktree)
    }

    /// The task id a `@bg_...` base names (a manifest's `@NAME` is one once the batch has
    /// given its rows ids).
    public var baseTask: String? {
        guard let base, base.hasPrefix("@") else { return nil }
        return String(base.dropFirst())
    }
}

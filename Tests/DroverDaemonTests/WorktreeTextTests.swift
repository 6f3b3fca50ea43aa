import DroverDaemon
import DroverWire
import Testing

/// How `drover status ID`, `drover output` and background_output show a worktree task.
@Suite struct WorktreeTextTests {
    static let base = String(repeating: "a", count: 40)
    static let head = String(repeating: "b", count: 40)

    func task(status: String, worktree: JSONObject?) -> JSONObject {
        var task: JSONObject = ["id": "bg_0000000f", "session_id": "ses_0000000f", "agent": "explore", "description": "fix it", "status": .string(status)]
        if let worktree { task["worktree"] = .object(worktree) }
        return task
    }

    @Test func anEndedTaskShowsItsBranchAndDiffStat() {
        let ended = task(status: "completed", worktree: [
            "repo": "/r", "branch": "drover/bg_0000000f", "base": .string(Self.base), "head": .string(Self.head),
            "files_changed": 2, "insertions": 10, "deletions": 1,
        ])
        #expect(TaskText.worktree(ended) == "drover/bg_0000000f: 2 files changed, +10 -1")
        #expect(TaskText.detail(ended).contains("worktree:     drover/bg_0000000f: 2 files changed, +10 -1"))
        #expect(TaskText.resultBlock(ended, result: "done").contains("\nWorktree: drover/bg_0000000f: 2 files changed, +10 -1\n"))
    }

    @Test func aRunningTaskShowsWhereItRuns() {
        let running = task(status: "running", worktree: [
            "repo": "/r", "branch": "drover/bg_0000000f", "base": .string(Self.base), "path": "/s/tasks/bg_0000000f/work",
        ])
        #expect(TaskText.worktree(running) == "branch drover/bg_0000000f (running in /s/tasks/bg_0000000f/work)")
        #expect(TaskText.detail(running).contains("worktree:     branch drover/bg_0000000f (running in /s/tasks/bg_0000000f/work)"))
    }

    @Test func keptDiscardedAndFailedRecordsSaySo() {
        let kept = task(status: "error", worktree: [
            "repo": "/r", "branch": "drover/bg_0000000f", "base": .string(Self.base), "head": .string(Self.head),
            "files_changed": 1, "insertions": 0, "deletions": 3, "path": "/w", "discarded_at": "2025-01-01T00:00:00.000Z",
            "error": "cannot remove the worktree\nmore",
        ])
        #expect(TaskText.worktree(kept) == "drover/bg_0000000f: 1 file changed, +0 -3 (worktree kept at /w) (discarded); error: cannot remove the worktree")
        #expect(TaskText.worktree(task(status: "completed", worktree: nil)) == nil)
        #expect(!TaskText.detail(task(status: "completed", worktree: nil)).contains("worktree"))
    }
}

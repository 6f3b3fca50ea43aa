import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover clean`: ended tasks' folders removed and the tasks forgotten by the daemon.
struct CleanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Remove ended tasks' folders and forget them.",
        discussion: """
            Without task ids, every ended task that matches the filters goes (no filter: every ended task; \
            --dry-run shows which first). A task that is pending or running is never removed, nor an ended one \
            that a pending task depends on (--after): they are listed as kept, with why. A worktree task's branch \
            (drover/<id>) and any kept worktree stay: use `drover discard ID` first to delete the branch. \
            The daemon does the removal (it is started if none runs), so its table and the folder agree.
            """
    )

    @OptionGroup var client: ClientOptions
    @Argument(help: "Ended tasks to remove (bg_...); none: every ended task that matches the filters.") var ids: [String] = []
    @Option(name: .customLong("older-than"), help: "Only tasks that ended more than this long ago, e.g. 7d, 12h.") var olderThan: String?
    @Option(name: .customLong("status"), help: "Only tasks that ended in this status (repeatable): completed, error, cancelled.")
    var statuses: [String] = []
    @Flag(name: .customLong("dry-run"), help: "Only print what would be removed.") var dryRun = false

    func validate() throws {
        for status in statuses where !(TaskStatus(rawValue: status)?.isTerminal ?? false) {
            throw ValidationError("--status \(status): expected an ended status: completed, error, cancelled")
        }
        _ = try parseDuration(olderThan, flag: "--older-than")
        if !ids.isEmpty && (!statuses.isEmpty || olderThan != nil) {
            throw ValidationError("give task ids or filters (--older-than, --status), not both")
        }
    }

    func run() throws {
        let request = CleanRequest(ids: ids, olderThanMs: try parseDuration(olderThan, flag: "--older-than"),
                                   statuses: statuses.compactMap(TaskStatus.init), dryRun: dryRun)
        let answer = try client.call(request)
        if client.common.json {
            var object = answer.frame()
            object["type"] = nil
            Terminal.out(JSONWriter.string(.object(object)))
            return
        }
        let verb = dryRun ? "Would remove" : "Removed"
        Terminal.out("\(verb) \(answer.removed.count) ended task(s)." + (answer.removed.isEmpty ? "" : " " + answer.removed.prefix(20).joined(separator: " ")
            + (answer.removed.count > 20 ? " ..." : "")))
        for kept in answer.skipped { Terminal.out("Kept \(kept.id): \(kept.reason)") }
    }
}

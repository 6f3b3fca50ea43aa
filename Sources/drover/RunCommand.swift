import ArgumentParser
import DroverCore
import DroverWire

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every task of a JSON-lines manifest and collect the results into a folder.",
        discussion: """
            Each line is one task: {"agent": "explore", "prompt": "..."} with optional "description", \
            "provider", "model", "ttl", "cwd", "env", "workdir" ("task": a fresh private folder; "worktree": a git \
            worktree of its own), "limits" (cpuSeconds, memory, openFiles, processes, fileSize), "sandbox", \
            "name", "after" and "priority", or {"command": ["argv", "..."]} for a raw command. \
            The config's onComplete runs for each task that ends. \
            Exit status: 0 all completed, 1 a task ended in error, 4 a task was cancelled, 2 a bad manifest or config.
            """
    )

    @OptionGroup var common: CommonOptions

    @Argument(help: "The manifest: one JSON object per line (with --retry-failed: by default the copy in the --results folder).")
    var file: String?

    @Option(name: .customLong("results"), help: "Results folder (default: ./drover-results/<UTC timestamp>).")
    var results: String?

    @Flag(name: .customLong("resume"), help: "Skip the tasks that a previous run into the same --results folder completed.")
    var resume = false

    @Flag(name: .customLong("retry-failed"), help: "Run again every row of the --results folder that did not complete (error, cancelled, lost); skip the completed ones.")
    var retryFailed = false

    @Flag(name: .customLong("halt-on-error"), help: "On the first task in error, cancel the others and stop.")
    var haltOnError = false

    @Option(name: .customLong("max-cost"), help: "A budget for the batch in US dollars: once it has no room for a task, the task ends cancelled(budget).")
    var maxCost: Double?

    @Option(name: .customLong("max-tokens"), help: "A budget for the batch in tokens (input + output), the same way.")
    var maxTokens: Int?

    func validate() throws {
        if let maxCost, !(maxCost.isFinite && maxCost >= 0) { throw ValidationError("--max-cost: expected an amount of US dollars of 0 or more") }
        if let maxTokens, maxTokens < 0 { throw ValidationError("--max-tokens: expected a number of tokens of 0 or more") }
        if resume && results == nil {
            throw ValidationError("--resume needs --results FOLDER: the folder of the run to resume")
        }
        if retryFailed && results == nil {
            throw ValidationError("--retry-failed needs --results FOLDER: the folder whose failed rows to run again")
        }
        if common.stateDirectory != nil {
            throw ValidationError("--state-dir is the daemon's folder; drover run writes its tasks to --results FOLDER")
        }
        if file == nil && !retryFailed { throw ValidationError("give the manifest file (one JSON task per line)") }
    }

    func run() throws {
        let supervision = startSupervising()
        if supervision.pid == nil { Terminal.error("drover: warning: \(supervision.summary)") }
        var config = try common.loadSupervisingConfig()
        if maxCost != nil || maxTokens != nil {
            // A batch cannot wait for a window to roll: its budget is the whole run, and a task
            // it has no room for is cancelled.
            config.budgets.append(Budget(name: "batch", scope: .all, costUsd: maxCost, tokens: maxTokens, windowMs: nil, onExhausted: .cancel))
        }
        let file = self.file ?? (results ?? ".") + "/" + BatchRun.manifestCopy
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.read(file)
        } catch {
            Terminal.error(self.file == nil ? "drover: --retry-failed without a manifest reads the copy a run keeps in its folder: \(error)" : "drover: \(error)")
            throw ExitCode(2)
        }
        let entries: [ManifestEntry]
        do {
            entries = try Manifest.parse(bytes, file: file, config: config)
        } catch {
            Terminal.error("drover: the manifest has errors; nothing was run.\n\(error)")
            throw ExitCode(2)
        }
        let folder = results ?? "drover-results/" + Clock.compactStamp(ms: Clock.wallMs())
        var options = BatchRun.Options(resultsDirectory: folder)
        options.resume = resume || retryFailed
        options.retryFailed = retryFailed
        options.haltOnError = haltOnError
        let batch: BatchRun
        do {
            batch = try BatchRun(entries: entries, config: config, launch: defaultLaunch(), options: options)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(2)
        }
        do {
            try batch.keepManifest(bytes)
        } catch {
            Terminal.error("drover: warning: cannot keep a copy of the manifest in the results folder (--retry-failed without a manifest needs it): \(error)")
        }
        let progress = ProcessSetup.isTerminal(2) && !common.json ? ProgressLine(loop: batch.loop) : nil
        progress?.start { batch.counts }
        let summary: BatchRun.Summary
        do {
            summary = try batch.run()
        } catch {
            progress?.finish()
            Terminal.error("drover: \(error)")
            throw ExitCode(1)
        }
        progress?.finish()
        if common.json {
            let text = (try? FileSystem.read(summary.resultsDirectory + "/summary.json")).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            Terminal.write(1, text)
        } else {
            printSummary(summary)
        }
        if summary.exitCode != 0 { throw ExitCode(summary.exitCode) }
    }

    private func printSummary(_ summary: BatchRun.Summary) {
        let c = summary.counts
        let resumed = summary.rows.filter(\.carriedOver).count
        Terminal.out("drover run: \(c.total) task\(c.total == 1 ? "" : "s") in \(Terminal.seconds(summary.wallMs)): "
            + "\(c.completed) completed\(resumed > 0 ? " (\(resumed) from an earlier run)" : ""), \(c.error) error, \(c.cancelled) cancelled")
        let spent = summary.rows.reduce(TaskUsage()) { $0 + $1.snapshot.usage }
        if !spent.isZero {
            Terminal.out("Spent: $\(Budgets.money(spent.costUsd)), \(spent.inputTokens) input and \(spent.outputTokens) output tokens")
        }
        let unfinished = summary.rows.filter { $0.snapshot.status != .completed }
        if !unfinished.isEmpty {
            Terminal.out("")
            Terminal.out("  " + Terminal.pad("Line", 6) + Terminal.pad("Task ID", 13) + Terminal.pad("Status", 24) + "Why")
            for row in unfinished.prefix(50) {
                let s = row.snapshot
                let status = "\(s.status.rawValue)(\(s.reason?.rawValue ?? "?"))"
                Terminal.out("  " + Terminal.pad(String(row.line), 6) + Terminal.pad(s.id, 13) + Terminal.pad(status, 24) + (s.error ?? ""))
            }
            if unfinished.count > 50 { Terminal.out("  ... and \(unfinished.count - 50) more in summary.json") }
        }
        Terminal.out("")
        Terminal.out("Results: \(summary.resultsDirectory) (summary.json, joblog.tsv, tasks/<id>/)")
    }
}

/// The live progress line of `drover run` on a terminal: counts by state and a bar,
/// redrawn a few times a second on stderr.
final class ProgressLine {
    private let loop: EventLoop
    private let timer: LoopTimer
    private let startMs = Clock.wallMs()

    init(loop: EventLoop) {
        self.loop = loop
        timer = LoopTimer(loop: loop)
    }

    func start(_ counts: @escaping () -> BatchRun.Counts) {
        timer.start(after: 100, repeat: 100) { [startMs] in
            let c = counts()
            let width = ProcessSetup.terminalWidth(2)
            let text = "\(Terminal.bar(done: c.done, total: c.total, width: 20)) \(c.done)/\(c.total) done · "
                + "\(c.running) running · \(c.pending) pending · \(c.error) failed · \(Terminal.seconds(Clock.wallMs() - startMs))"
            Terminal.redraw(2, String(text.prefix(width - 1)))
        }
        timer.unref()
    }

    func finish() {
        timer.stop()
        Terminal.clearLine(2)
    }
}

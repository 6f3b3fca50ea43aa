@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

/// SPEC 12 with real mock-agent workers: usage per attempt and task, prices, budgets.
@Suite struct BudgetTests {
    func usage(_ h: Harness, _ id: String) throws -> TaskUsage {
        TaskUsage(json: try #require(try h.taskJSON(id)["usage"]?.objectValue))
    }

    @Test func usageIsSummedOverAttemptsAndKeptForFailedOnes() throws {
        var config = Harness.testConfig()
        config.retry.backoff = Backoff(initialMs: 50, multiplier: 2, maxMs: 100, jitter: 0)
        config.prices = ["mock/priced": Price(input: 3, output: 15)]
        let h = try Harness(config: config)
        let retried = try h.submit("@usage 100 50 0.01\n@fail-attempts 1\n@usage 300 100 0.03\n@result ok")
        let failed = try h.submit("@usage 10 5 0.5\n@exit 3")
        let priced = try h.submit("@usage 1000000 100000\n@result ok") { $0.model = "priced" }
        let ended = h.run(until: [retried, failed, priced])
        #expect(ended[retried]?.status == .completed && ended[failed]?.status == .error)
        #expect(try usage(h, retried) == TaskUsage(inputTokens: 400, outputTokens: 150, costUsd: 0.04))
        let attempts = try #require(TaskSnapshot(json: try h.taskJSON(retried))).attempts
        #expect(attempts.map(\.usage) == [TaskUsage(inputTokens: 100, outputTokens: 50, costUsd: 0.01), TaskUsage(inputTokens: 300, outputTokens: 100, costUsd: 0.03)])
        #expect(try usage(h, failed).costUsd == 0.5, "money spent is spent, whatever the end")
        // Tokens without a cost are priced: 1M input at $3, 0.1M output at $15.
        #expect(abs(try usage(h, priced).costUsd - 4.5) < 1e-9)
        let lines = UsageLine.read(h.store.folder)
        #expect(lines.filter { $0.taskID == retried }.map(\.attempt) == [1, 2, 2])
        #expect(lines.allSatisfy { $0.agent == "explore" })
    }

    @Test func aTaskPastItsOwnCapIsCancelledAtTheFrameThatPassesIt() throws {
        let h = try Harness()
        let id = try h.submit("@usage 10 10 0.2\n@usage 20 20 0.6\n@sleep 5s\n@result never") { $0.spendLimits.maxCostUsd = 0.5 }
        let tokens = try h.submit("@usage 600 500\n@sleep 5s\n@result never") { $0.spendLimits.maxTokens = 1000 }
        let ended = h.run(until: [id, tokens])
        #expect(ended[id]?.status == .cancelled && ended[id]?.reason == .budget)
        #expect(ended[id]?.error == "the task spent $0.6, over its maxCostUsd of $0.5")
        #expect((ended[id]?.durationMs ?? 99_999) < 4_000)
        #expect(ended[tokens]?.reason == .budget && ended[tokens]?.error?.contains("1100 tokens, over its maxTokens of 1000") == true)
        h.expectNothingLeft(of: id)
    }

    func batch(_ rows: Int, costEach: String, maxCost: Double, estimate: Double?) throws -> (BatchRun.Summary, String) {
        var config = Harness.testConfig()
        config.providerConcurrency = ["mock": 8]
        config.budgets = [Budget(name: "batch", scope: .all, costUsd: maxCost, windowMs: nil, onExhausted: .cancel)]
        config.agents["explore"]!.estimateCostUsd = estimate
        ProcessSetup.prepare()
        let manifest = (0..<rows).map { _ in #"{"agent": "explore", "prompt": "@usage 1000 1000 \#(costEach)\n@sleep 100ms\n@result ok"}"# }
        let entries = try Manifest.parse(Array(manifest.joined(separator: "\n").utf8), file: "m.jsonl", config: config)
        let folder = try temporaryFolder()
        var options = BatchRun.Options(resultsDirectory: folder)
        options.durable = false
        let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
        return (try BatchRun(entries: entries, config: config, launch: launch, options: options).run(), folder)
    }

    @Test func withAnEstimateABatchBudgetIsNeverOvershot() throws {
        let (summary, folder) = try batch(20, costEach: "0.30", maxCost: 2.00, estimate: 0.30)
        defer { removeTree(folder) }
        let spent = summary.rows.reduce(0.0) { $0 + $1.snapshot.usage.costUsd }
        #expect(spent <= 2.0 + 1e-9, "spent $\(spent) of a $2.00 budget")
        #expect(summary.counts.completed == 6 && summary.counts.cancelled == 14)
        let cancelled = summary.rows.filter { $0.snapshot.status == .cancelled }
        #expect(cancelled.allSatisfy { $0.snapshot.reason == .budget && $0.snapshot.error?.contains("budget batch (all) has no room") == true })
        #expect(cancelled.allSatisfy { $0.snapshot.startedMs == nil }, "a task the budget has no room for never starts")
        #expect(try readJSON(folder + "/summary.json")["usage"]?.objectValue?["cost_usd"] == .number(1.8))
    }

    @Test func withoutAnEstimateTheOvershootIsWhatTheRunningTasksSpent() throws {
        let (summary, folder) = try batch(20, costEach: "0.30", maxCost: 2.00, estimate: nil)
        defer { removeTree(folder) }
        let spent = summary.rows.reduce(0.0) { $0 + $1.snapshot.usage.costUsd }
        #expect(spent <= 2.0 + 8 * 0.30 + 1e-9, "spent $\(spent): more than the 8 running tasks could overshoot")
        #expect(spent >= 2.0 - 1e-9)
        #expect(summary.counts.cancelled > 0 && summary.rows.allSatisfy { $0.snapshot.status != .error })
    }

    @Test func aRollingWindowLetsAWaitingTaskStartOnceOldSpendLeavesIt() throws {
        var config = Harness.testConfig()
        config.budgets = [Budget(name: "hourly", scope: .agent("explore"), costUsd: 0.5, windowMs: 1_000, onExhausted: .wait)]
        config.agents["explore"]!.estimateCostUsd = 0.3
        let h = try Harness(config: config)
        let first = try h.submit("@usage 1 1 0.4\n@result first")
        h.run(until: [first])
        let spentAt = Clock.wallMs()
        let second = try h.submit("@result second")
        // Another scope is not held up.
        let other = try h.submit("@result other", agent: "librarian")
        #expect(eventually(withinMs: 5_000) {
            h.run(forMs: 20)
            return h.supervisor.snapshot(second)?.waitingFor == .budget
        })
        let ended = h.run(until: [second, other])
        #expect((ended[other]?.startedMs ?? .max) - spentAt < 700)
        #expect((ended[second]?.startedMs ?? 0) - spentAt >= 500, "it started before the spend left the 1 s window")
        #expect(ended[second]?.status == .completed)
    }

    @Test func aHardBudgetCancelsTheRunningTasksItCoversOnly() throws {
        var config = Harness.testConfig()
        config.budgets = [Budget(name: "explore-cap", scope: .agent("explore"), costUsd: 0.5, windowMs: nil, onExhausted: .wait, hard: true)]
        let h = try Harness(config: config)
        let quiet = try h.submit("@message waiting\n@hang")
        let outside = try h.submit("@message elsewhere\n@hang", agent: "librarian")
        var spender: String?
        h.onReport = { [unowned h] snapshot in
            guard spender == nil, snapshot.id == quiet, snapshot.status == .running else { return }
            spender = try? h.submit("@usage 1 1 0.6\n@hang")
        }
        h.run(until: [quiet])
        let ended = h.run(until: [spender!])
        #expect(ended[quiet]?.reason == .budget && ended[spender!]?.reason == .budget)
        #expect(ended[quiet]?.error?.contains("explore-cap") == true)
        #expect(h.supervisor.snapshot(outside)?.status == .running, "a task outside the budget's scope goes on")
        h.supervisor.cancel(outside)
        h.run(until: [outside])
    }

    @Test func theMoneyFiguresReadAsPeopleWriteThem() {
        #expect(Budgets.money(0.3) == "0.3" && Budgets.money(2) == "2" && Budgets.money(0.00041) == "0.0004" && Budgets.money(1.25) == "1.25")
    }
}

import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover usage`: spend and tokens from the state folder's usage.jsonl, grouped, and each
/// budget's standing from the daemon when one answers.
struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage",
        abstract: "Spend and tokens by agent, provider, model or day, with each budget's spent, reserved and remaining.")

    @OptionGroup var client: ClientOptions
    @Option(help: "Group by agent, provider, model or day.") var by: String = "agent"
    @Option(help: "Only spend since this long ago, e.g. 1d, 12h.") var since: String?

    func validate() throws {
        guard UsageReport.Grouping(rawValue: by) != nil else { throw ValidationError("--by: expected agent, provider, model or day, found \"\(by)\"") }
        _ = try parseDuration(since, flag: "--since")
    }

    func run() throws {
        let grouping = UsageReport.Grouping(rawValue: by)!
        let sinceMs = try parseDuration(since, flag: "--since").map { Clock.wallMs() - Int64($0) }
        let lines: [UsageLine]
        do {
            try FolderPermissions.check(path: client.state.path)
            lines = FileSystem.exists(client.state.path) ? UsageLine.read(try SafeFolder(root: client.state.path)) : []
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(2)
        }
        let rows = UsageReport.rows(lines, by: grouping, sinceMs: sinceMs)
        let total = rows.reduce(TaskUsage()) { $0 + $1.usage }
        // Budgets live in the daemon (what running tasks reserve): asked, never started for it.
        let budgets = (try? ControlClient.connect(state: client.state, autostart: false).call(StatsRequest()))?.budgets ?? []
        if client.common.json {
            let document: JSONObject = [
                "by": .string(by), "since": sinceMs.map { .string(Clock.rfc3339(ms: $0)) } ?? .null,
                "rows": .array(rows.map { .object($0.json) }), "total": .object(total.json), "budgets": .array(budgets.map { .object($0) }),
            ]
            return Terminal.out(JSONWriter.string(.object(document)))
        }
        if rows.isEmpty {
            Terminal.out("No usage recorded\(since.map { " in the last \($0)" } ?? "").")
        } else {
            Terminal.out(TaskText.table([by.capitalized, "Cost (USD)", "Input", "Output", "Cache read", "Cache write", "Tasks"], rows.map { row in
                [row.key, Budgets.money(row.usage.costUsd), String(row.usage.inputTokens), String(row.usage.outputTokens),
                 String(row.usage.cacheReadTokens), String(row.usage.cacheWriteTokens), String(row.tasks.count)]
            }))
            Terminal.out("Total: $\(Budgets.money(total.costUsd)), \(total.inputTokens) input and \(total.outputTokens) output tokens")
        }
        for budget in budgets { Terminal.out("Budget " + Self.standing(budget)) }
    }

    /// One budget's standing in a line.
    static func standing(_ budget: JSONObject) -> String {
        func usd(_ key: String) -> String { budget[key]?.numberValue.map { "$" + Budgets.money($0) } ?? "-" }
        func count(_ key: String) -> String { budget[key]?.intValue.map(String.init) ?? "-" }
        var parts: [String] = []
        if budget["cost_usd"]?.numberValue != nil {
            parts.append("\(usd("spent_usd")) spent, \(usd("reserved_usd")) reserved, \(usd("remaining_usd")) left of \(usd("cost_usd"))")
        }
        if budget["tokens"]?.intValue != nil {
            parts.append("\(count("spent_tokens")) tokens used, \(count("reserved_tokens")) reserved, \(count("remaining_tokens")) left of \(count("tokens"))")
        }
        let name = budget["name"]?.stringValue ?? "?"
        let scope = budget["scope"]?.stringValue ?? "?"
        let window = budget["window"]?.stringValue ?? "?"
        return "\(name) (\(scope), \(window == "total" ? "in all" : "per " + window)): " + parts.joined(separator: "; ")
    }
}

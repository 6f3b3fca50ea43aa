import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover stats`: the daemon's own figures, read-only (for monitoring and the fault tests).
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "The daemon's figures: slots in use per pool, running and pending tasks, open descriptors, a Slurm cluster's licenses.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        let answer = try client.call(StatsRequest())
        if client.common.json {
            var document = answer.frame()
            document["type"] = nil
            return Terminal.out(JSONWriter.string(.object(document)))
        }
        var lines = [
            "daemon pid \(answer.pid): \(answer.running) running, \(answer.pending) pending, "
                + "\(answer.tasks) tasks known, \(answer.openDescriptors) open descriptors",
        ]
        for pool in answer.pools {
            var limit = pool.limit == 0 ? "unlimited" : String(pool.limit)
            if pool.effectiveLimit != pool.limit { limit = "\(pool.effectiveLimit) (limit \(limit), lowered by rate limits)" }
            var line = "pool \(pool.id): \(pool.running) of \(limit) in use, \(pool.waiting) waiting"
            if let until = pool.cooldownUntilMs {
                line += ", cooling down for \(DurationText.format(milliseconds: Int(max(0, until - Clock.wallMs()))))"
            }
            lines.append(line)
        }
        for budget in answer.budgets { lines.append("budget " + UsageCommand.standing(budget)) }
        for license in answer.licenses ?? [] {
            let figure = { (key: String) in license[key]?.intValue.map(String.init) ?? "?" }
            lines.append("cluster license \(license["name"]?.stringValue ?? "?"): \(figure("used")) of \(figure("total")) in use, \(figure("free")) free")
        }
        if let problem = answer.clusterProblem { lines.append("cluster licenses unknown: \(problem)") }
        Terminal.out(lines.joined(separator: "\n"))
    }
}

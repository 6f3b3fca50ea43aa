import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover stats`: the daemon's own figures, read-only (for monitoring and the fault tests).
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "The daemon's figures: slots in use per pool, running and pending tasks, open descriptors.")

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
            let limit = pool.limit == 0 ? "unlimited" : String(pool.limit)
            lines.append("pool \(pool.id): \(pool.running) of \(limit) in use, \(pool.waiting) waiting")
        }
        Terminal.out(lines.joined(separator: "\n"))
    }
}

import ArgumentParser
import DroverCore
import DroverWire

/// `drover stats`: the daemon's own figures, read-only (for monitoring and the fault tests).
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "The daemon's figures: slots in use per pool, running and pending tasks, open descriptors.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        var answer = try client.call(["type": "stats"])
        answer["type"] = nil
        if client.common.json { return Terminal.out(JSONWriter.string(.object(answer))) }
        func number(_ value: JSONValue?) -> String { value?.intValue.map(String.init) ?? "?" }
        var lines = [
            "daemon pid \(number(answer["pid"])): \(number(answer["running"])) running, \(number(answer["pending"])) pending, "
                + "\(number(answer["tasks"])) tasks known, \(number(answer["open_fds"])) open descriptors",
        ]
        for pool in answer["pools"]?.arrayValue?.compactMap(\.objectValue) ?? [] {
            let limit = pool["limit"]?.intValue == 0 ? "unlimited" : number(pool["limit"])
            lines.append("pool \(pool["id"]?.stringValue ?? "?"): \(number(pool["running"])) of \(limit) in use, \(number(pool["waiting"])) waiting")
        }
        Terminal.out(lines.joined(separator: "\n"))
    }
}

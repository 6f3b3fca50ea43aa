import DroverWire

/// `drover usage`: spend and tokens from usage.jsonl, grouped. Each line holds an attempt's
/// totals so far, so what a line adds is its totals less the attempt's line before.
public enum UsageReport {
    public enum Grouping: String, Sendable, CaseIterable {
        case agent, provider, model, day
    }

    public struct Row: Sendable, Equatable {
        public var key: String
        public var usage = TaskUsage()
        public var tasks: Set<String> = []

        public var json: JSONObject {
            var object: JSONObject = ["key": .string(key), "tasks": .number(Double(tasks.count))]
            for (name, value) in usage.json.members { object[name] = value }
            return object
        }
    }

    /// Rows by key, most spent first; spend from `sinceMs` on (all, when nil).
    public static func rows(_ lines: [UsageLine], by grouping: Grouping, sinceMs: Int64? = nil) -> [Row] {
        var last: [String: TaskUsage] = [:]
        var rows: [String: Row] = [:]
        for line in lines {
            let attempt = "\(line.taskID)#\(line.attempt)"
            let added = line.totals - (last[attempt] ?? TaskUsage())
            last[attempt] = line.totals
            if let sinceMs, line.atMs < sinceMs { continue }
            let key: String
            switch grouping {
            case .agent: key = line.agent
            case .provider: key = line.provider ?? "-"
            case .model: key = line.provider.map { "\($0)/\(line.model ?? "-")" } ?? (line.model ?? "-")
            case .day: key = String(Clock.rfc3339(ms: line.atMs).prefix(10))
            }
            var row = rows[key] ?? Row(key: key)
            row.usage = row.usage + added
            row.tasks.insert(line.taskID)
            rows[key] = row
        }
        return rows.values.sorted { ($0.usage.costUsd, $0.key) > ($1.usage.costUsd, $1.key) }
    }
}

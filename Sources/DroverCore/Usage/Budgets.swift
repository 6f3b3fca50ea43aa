import DroverWire
import Glibc

/// A line of usage.jsonl: an attempt's totals so far, each time they change. Spending
/// windows are rebuilt from these after a restart.
public struct UsageLine: Sendable, Equatable {
    public var atMs: Int64
    public var taskID: String
    public var attempt: Int
    public var agent: String
    public var provider: String?
    public var model: String?
    public var totals: TaskUsage

    public init(atMs: Int64, taskID: String, attempt: Int, agent: String, provider: String?, model: String?, totals: TaskUsage) {
        self.atMs = atMs
        self.taskID = taskID
        self.attempt = attempt
        self.agent = agent
        self.provider = provider
        self.model = model
        self.totals = totals
    }

    public var json: JSONObject {
        var object: JSONObject = [
            "t": .number(Double(atMs)), "task_id": .string(taskID), "attempt": .number(Double(attempt)), "agent": .string(agent),
            "provider": JSONValue(provider), "model": JSONValue(model),
        ]
        for (key, value) in totals.json.members { object[key] = value }
        return object
    }

    var line: [UInt8] {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(json, into: &bytes)
        bytes.append(0x0A)
        return bytes
    }

    public init?(json object: JSONObject) {
        guard let taskID = object["task_id"]?.stringValue, let attempt = object["attempt"]?.intValue, let agent = object["agent"]?.stringValue else { return nil }
        self.init(atMs: Int64(object["t"]?.intValue ?? 0), taskID: taskID, attempt: attempt, agent: agent, provider: object["provider"]?.stringValue,
                  model: object["model"]?.stringValue, totals: TaskUsage(json: object))
    }

    /// The lines of a folder's usage.jsonl, its rotated files first (ones that do not parse
    /// are skipped).
    public static func read(_ folder: SafeFolder) -> [UsageLine] {
        guard let bytes = LogRotation.readAll("usage.jsonl", in: folder) else { return [] }
        return bytes.split(separator: 0x0A).compactMap { line in
            (try? JSONParser.parse(line).value.objectValue).flatMap { $0.flatMap(UsageLine.init(json:)) }
        }
    }
}

/// A folder's spending against its budgets (SPEC 12): what each budget's window holds, what
/// running tasks reserve, and whether a task may start. Times are wall milliseconds (windows
/// outlive the process); the caller says what time it is.
public final class Budgets {
    public let budgets: [Budget]

    /// What a task is expected to cost, for admission and its reservation.
    public struct Estimate: Sendable, Equatable {
        public var costUsd: Double
        public var tokens: Int
        public init(costUsd: Double, tokens: Int) {
            self.costUsd = costUsd
            self.tokens = tokens
        }
    }

    /// Who spends: what a budget's scope is matched against.
    public struct Spender: Sendable, Equatable {
        public var agent: String
        public var provider: String?
        public var model: String?
        public init(agent: String, provider: String?, model: String?) {
            self.agent = agent
            self.provider = provider
            self.model = model
        }
    }

    public enum Admission: Sendable, Equatable {
        case fits
        /// No room now; `untilMs`: when the window next loses spend (nil: when a running task ends).
        case wait(budget: String, untilMs: Int64?)
        /// The spent amount alone leaves no room: the task ends cancelled(budget).
        case refuse(budget: String, message: String)
    }

    /// One budget's spend, in order, with running sums.
    private struct Window {
        var entries: [(atMs: Int64, costUsd: Double, tokens: Int)] = []
        var head = 0
        var costUsd = 0.0
        var tokens = 0

        mutating func add(_ atMs: Int64, _ cost: Double, _ tokens: Int) {
            entries.append((atMs, cost, tokens))
            costUsd += cost
            self.tokens += tokens
        }

        mutating func expire(before cutoffMs: Int64) {
            while head < entries.count, entries[head].atMs <= cutoffMs {
                costUsd -= entries[head].costUsd
                tokens -= entries[head].tokens
                head += 1
            }
            if head > 1024 && head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
            if head == entries.count { costUsd = 0; tokens = 0 }  // no drift from float sums
        }

        var oldestMs: Int64? { head < entries.count ? entries[head].atMs : nil }
    }

    private struct Reservation {
        var spender: Spender
        var estimate: Estimate
        /// What its running attempt has spent so far (already in the windows).
        var spentCost = 0.0
        var spentTokens = 0

        var reservedCost: Double { max(0, estimate.costUsd - spentCost) }
        var reservedTokens: Int { max(0, estimate.tokens - spentTokens) }
    }

    private var windows: [Window]
    private var lastTotals: [String: TaskUsage] = [:]
    private var reservations: [String: Reservation] = [:]
    private var completed: [String: (count: Int, costUsd: Double, tokens: Int)] = [:]

    public init(budgets: [Budget]) {
        self.budgets = budgets
        windows = Array(repeating: Window(), count: budgets.count)
    }

    public var isEmpty: Bool { budgets.isEmpty }

    // MARK: spending

    /// An attempt's totals changed; returns what was spent since its last totals.
    @discardableResult
    public func record(_ line: UsageLine) -> TaskUsage {
        let key = "\(line.taskID)#\(line.attempt)"
        let delta = line.totals - (lastTotals[key] ?? TaskUsage())
        lastTotals[key] = line.totals
        let spender = Spender(agent: line.agent, provider: line.provider, model: line.model)
        for (index, budget) in budgets.enumerated() where budget.scope.covers(agent: spender.agent, provider: spender.provider, model: spender.model) {
            windows[index].add(line.atMs, delta.costUsd, delta.tokens)
        }
        if var reservation = reservations[line.taskID] {
            reservation.spentCost += delta.costUsd
            reservation.spentTokens += delta.tokens
            reservations[line.taskID] = reservation
        }
        return delta
    }

    /// A task completed with this usage: the mean of its agent's completed tasks follows it.
    public func completed(agent: String, usage: TaskUsage) {
        var mean = completed[agent] ?? (0, 0, 0)
        mean.count += 1
        mean.costUsd += usage.costUsd
        mean.tokens += usage.tokens
        completed[agent] = mean
    }

    /// The agent's `estimateCostUsd`, else the mean cost of its completed tasks (0 before
    /// the first); tokens by the mean.
    public func estimate(agent: String, fixedCostUsd: Double?) -> Estimate {
        let mean = completed[agent]
        let meanCost = mean.map { $0.costUsd / Double($0.count) } ?? 0
        let meanTokens = mean.map { $0.tokens / $0.count } ?? 0
        return Estimate(costUsd: fixedCostUsd ?? meanCost, tokens: meanTokens)
    }

    // MARK: admission

    private func limits(covering spender: Spender) -> [Int] {
        budgets.indices.filter { budgets[$0].scope.covers(agent: spender.agent, provider: spender.provider, model: spender.model) }
    }

    private func expire(_ index: Int, nowMs: Int64) {
        if let window = budgets[index].windowMs { windows[index].expire(before: nowMs - Int64(window)) }
    }

    private func reserved(_ index: Int, excluding taskID: String?) -> (Double, Int) {
        var cost = 0.0
        var tokens = 0
        let scope = budgets[index].scope
        for (id, reservation) in reservations where id != taskID && scope.covers(agent: reservation.spender.agent, provider: reservation.spender.provider, model: reservation.spender.model) {
            cost += reservation.reservedCost
            tokens += reservation.reservedTokens
        }
        return (cost, tokens)
    }

    /// Whether a task may start now: spent + reserved + its estimate must fit every budget
    /// that covers it.
    public func admission(of taskID: String, _ spender: Spender, estimate: Estimate, nowMs: Int64) -> Admission {
        for index in limits(covering: spender) {
            expire(index, nowMs: nowMs)
            let budget = budgets[index]
            let window = windows[index]
            let (reservedCost, reservedTokens) = reserved(index, excluding: taskID)
            let costFits = budget.costUsd.map { window.costUsd < $0 && window.costUsd + reservedCost + estimate.costUsd <= $0 + 1e-9 } ?? true
            let tokensFit = budget.tokens.map { window.tokens < $0 && window.tokens + reservedTokens + estimate.tokens <= $0 } ?? true
            if costFits && tokensFit { continue }
            // Only spending leaves a window: with none to leave, running tasks' reservations are what blocks.
            let until = budget.windowMs.flatMap { ms in window.oldestMs.map { $0 + Int64(ms) + 1 } }
            if budget.onExhausted == .cancel {
                let roomForCost = budget.costUsd.map { window.costUsd < $0 && window.costUsd + estimate.costUsd <= $0 + 1e-9 } ?? true
                let roomForTokens = budget.tokens.map { window.tokens < $0 && window.tokens + estimate.tokens <= $0 } ?? true
                if !(roomForCost && roomForTokens) { return .refuse(budget: budget.name, message: refusal(budget, window, estimate)) }
            }
            return .wait(budget: budget.name, untilMs: until)
        }
        return .fits
    }

    private func refusal(_ budget: Budget, _ window: Window, _ estimate: Estimate) -> String {
        let spent = budget.costUsd != nil
            ? "$\(Self.money(window.costUsd)) of $\(Self.money(budget.costUsd!)) spent" : "\(window.tokens) of \(budget.tokens!) tokens used"
        let need = estimate.costUsd > 0 ? ", and it is expected to cost $\(Self.money(estimate.costUsd))" : ""
        return "budget \(budget.name) (\(budget.scope)) has no room: \(spent)\(need)"
    }

    /// A started task holds its estimate against every budget that covers it, until it ends.
    public func reserve(_ taskID: String, _ spender: Spender, estimate: Estimate) {
        reservations[taskID] = Reservation(spender: spender, estimate: estimate)
    }

    public func release(_ taskID: String) { reservations[taskID] = nil }

    /// Hard budgets covering this spender whose spend has passed their limit.
    public func hardBudgetsPassed(by spender: Spender, nowMs: Int64) -> [Budget] {
        limits(covering: spender).filter { index in
            guard budgets[index].hard else { return false }
            expire(index, nowMs: nowMs)
            let window = windows[index]
            return budgets[index].costUsd.map { window.costUsd > $0 + 1e-9 } == true || budgets[index].tokens.map { window.tokens > $0 } == true
        }.map { budgets[$0] }
    }

    /// When the first rolling window that holds spend loses some.
    public func nextExpiryMs() -> Int64? {
        budgets.indices.compactMap { index in
            budgets[index].windowMs.flatMap { ms in windows[index].oldestMs.map { $0 + Int64(ms) + 1 } }
        }.min()
    }

    // MARK: reports

    public struct Standing: Sendable, Equatable {
        public var budget: Budget
        public var spentUsd: Double
        public var spentTokens: Int
        public var reservedUsd: Double
        public var reservedTokens: Int

        public var remainingUsd: Double? { budget.costUsd.map { max(0, $0 - spentUsd - reservedUsd) } }
        public var remainingTokens: Int? { budget.tokens.map { max(0, $0 - spentTokens - reservedTokens) } }

        public var json: JSONObject {
            var object: JSONObject = [
                "name": .string(budget.name), "scope": .string(budget.scope.description),
                "window": budget.windowMs.map { .string(DurationText.format(milliseconds: $0)) } ?? "total",
                "on_exhausted": .string(budget.onExhausted.rawValue), "hard": .bool(budget.hard),
                "spent_usd": .number(TaskUsage.rounded(spentUsd)), "spent_tokens": .number(Double(spentTokens)),
                "reserved_usd": .number(TaskUsage.rounded(reservedUsd)), "reserved_tokens": .number(Double(reservedTokens)),
            ]
            object["cost_usd"] = budget.costUsd.map { .number($0) } ?? .null
            object["tokens"] = budget.tokens.map { .number(Double($0)) } ?? .null
            object["remaining_usd"] = remainingUsd.map { .number(TaskUsage.rounded($0)) } ?? .null
            object["remaining_tokens"] = remainingTokens.map { .number(Double($0)) } ?? .null
            return object
        }
    }

    public func standings(nowMs: Int64) -> [Standing] {
        budgets.indices.map { index in
            expire(index, nowMs: nowMs)
            let (cost, tokens) = reserved(index, excluding: nil)
            return Standing(budget: budgets[index], spentUsd: windows[index].costUsd, spentTokens: windows[index].tokens,
                            reservedUsd: cost, reservedTokens: tokens)
        }
    }

    /// "0.3", "1.25", "0.0004": dollars as people write them.
    public static func money(_ usd: Double) -> String {
        let tenThousandths = Int((abs(usd) * 10_000).rounded())
        var fraction = String(tenThousandths % 10_000)
        fraction = String(repeating: "0", count: 4 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return (usd < 0 ? "-" : "") + String(tenThousandths / 10_000) + (fraction.isEmpty ? "" : "." + fraction)
    }
}

import DroverWire

/// A cap on money or tokens over tasks (SPEC section 12, config `budgets`).
public struct Budget: Sendable, Equatable {
    public enum Scope: Sendable, Equatable, CustomStringConvertible {
        case all
        case provider(String)
        /// `provider/model`.
        case model(String)
        case agent(String)

        public var description: String {
            switch self {
            case .all: "all"
            case .provider(let p): "provider:\(p)"
            case .model(let m): "model:\(m)"
            case .agent(let a): "agent:\(a)"
            }
        }

        public init?(_ text: String) {
            if text == "all" { self = .all; return }
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else { return nil }
            switch parts[0] {
            case "provider": self = .provider(parts[1])
            case "model" where parts[1].contains("/"): self = .model(parts[1])
            case "agent": self = .agent(parts[1])
            default: return nil
            }
        }

        public func covers(agent: String, provider: String?, model: String?) -> Bool {
            switch self {
            case .all: true
            case .provider(let p): provider == p
            case .model(let m): provider.map { "\($0)/\(model ?? "")" } == m
            case .agent(let a): agent == a
            }
        }
    }

    public enum Exhausted: String, Sendable {
        /// Tasks in scope stay pending (`waiting_for: budget`) until the window has room.
        case wait
        /// A task ends cancelled(budget) once the spent amount alone leaves no room for it.
        case cancel
    }

    public var name: String
    public var scope: Scope
    public var costUsd: Double?
    public var tokens: Int?
    /// A rolling window; nil: all time (`total`).
    public var windowMs: Int?
    public var onExhausted: Exhausted
    /// Past the limit, running tasks in scope are cancelled too.
    public var hard: Bool

    public init(name: String, scope: Scope, costUsd: Double? = nil, tokens: Int? = nil, windowMs: Int? = nil,
                onExhausted: Exhausted = .wait, hard: Bool = false)
    {
        self.name = name
        self.scope = scope
        self.costUsd = costUsd
        self.tokens = tokens
        self.windowMs = windowMs
        self.onExhausted = onExhausted
        self.hard = hard
    }
}

/// A task's own caps (`maxCostUsd`, `maxTokens`; global, agent, task).
public struct SpendLimits: Sendable, Equatable {
    public var maxCostUsd: Double?
    public var maxTokens: Int?

    public init(maxCostUsd: Double? = nil, maxTokens: Int? = nil) {
        self.maxCostUsd = maxCostUsd
        self.maxTokens = maxTokens
    }

    public func over(_ base: SpendLimits) -> SpendLimits {
        SpendLimits(maxCostUsd: maxCostUsd ?? base.maxCostUsd, maxTokens: maxTokens ?? base.maxTokens)
    }

    /// Which cap this usage passes, in words; nil within them.
    public func passed(by usage: TaskUsage) -> String? {
        if let max = maxCostUsd, usage.costUsd > max {
            return "the task spent $\(Budgets.money(usage.costUsd)), over its maxCostUsd of $\(Budgets.money(max))"
        }
        if let max = maxTokens, usage.tokens > max {
            return "the task used \(usage.tokens) tokens, over its maxTokens of \(max)"
        }
        return nil
    }

    static let keys = ["maxCostUsd", "maxTokens"]

    func json() -> JSONObject {
        var object = JSONObject()
        if let maxCostUsd { object["maxCostUsd"] = .number(maxCostUsd) }
        if let maxTokens { object["maxTokens"] = .number(Double(maxTokens)) }
        return object
    }
}

extension ConfigReader {
    func money(_ value: JSONValue, _ path: String) throws(ConfigError) -> Double {
        guard let n = value.numberValue, n.isFinite, n >= 0 else { throw fail(path, "expected an amount of US dollars (a number of 0 or more), found \(describe(value))") }
        return n
    }

    /// `maxCostUsd` or `maxTokens`; false when the key is not one.
    func readSpendLimit(_ key: String, _ value: JSONValue, _ path: String, into limits: inout SpendLimits) throws(ConfigError) -> Bool {
        switch key {
        case "maxCostUsd": limits.maxCostUsd = try money(value, path)
        case "maxTokens": limits.maxTokens = try count(value, path)
        default: return false
        }
        return true
    }

    func readBudgets(_ value: JSONValue, _ path: String) throws(ConfigError) -> [Budget] {
        guard case .array(let items) = value else { throw fail(path, "expected a list of budgets, found \(value.typeName)") }
        var budgets: [Budget] = []
        for (index, item) in items.enumerated() {
            let base = "\(path).\(index)"
            let fields = try object(item, base)
            guard let nameValue = fields["name"] else { throw fail(base, "a budget needs a \"name\"") }
            var budget = Budget(name: try string(nameValue, "\(base).name"), scope: .all)
            guard !budgets.contains(where: { $0.name == budget.name }) else { throw fail("\(base).name", "another budget has the name \"\(budget.name)\"") }
            for (key, member) in fields.members {
                let memberPath = "\(base).\(key)"
                switch key {
                case "name": break
                case "scope":
                    let text = try string(member, memberPath)
                    guard let scope = Budget.Scope(text) else {
                        throw fail(memberPath, "expected all, provider:P, model:P/M or agent:A, found \"\(text)\"")
                    }
                    budget.scope = scope
                case "costUsd": budget.costUsd = try money(member, memberPath)
                case "tokens": budget.tokens = try count(member, memberPath)
                case "window":
                    if case .string("total") = member { budget.windowMs = nil } else {
                        let ms = try duration(member, memberPath)
                        guard ms > 0 else { throw fail(memberPath, "a window must be longer than 0 (or \"total\")") }
                        budget.windowMs = ms
                    }
                case "onExhausted":
                    let text = try string(member, memberPath)
                    guard let exhausted = Budget.Exhausted(rawValue: text) else { throw fail(memberPath, "expected \"wait\" or \"cancel\", found \"\(text)\"") }
                    budget.onExhausted = exhausted
                case "hard": budget.hard = try bool(member, memberPath)
                default: throw fail(memberPath, "unknown key (known: name, scope, costUsd, tokens, window, onExhausted, hard)")
                }
            }
            guard budget.costUsd != nil || budget.tokens != nil else { throw fail(base, "a budget needs \"costUsd\" or \"tokens\" (or both)") }
            if fields["window"] == nil { throw fail(base, "a budget needs a \"window\": a duration such as \"1d\", or \"total\"") }
            budgets.append(budget)
        }
        return budgets
    }

    func readPrices(_ value: JSONValue, _ path: String) throws(ConfigError) -> [String: Price] {
        var prices: [String: Price] = [:]
        for (model, entry) in try object(value, path).members {
            let base = "\(path).\(model)"
            guard model.contains("/") else { throw fail(base, "prices are by \"provider/model\"") }
            var price = Price(input: 0, output: 0)
            var seen: Set<String> = []
            for (key, member) in try object(entry, base).members {
                let memberPath = "\(base).\(key)"
                let amount = try money(member, memberPath)
                switch key {
                case "input": price.input = amount
                case "output": price.output = amount
                case "cacheRead": price.cacheRead = amount
                case "cacheWrite": price.cacheWrite = amount
                default: throw fail(memberPath, "unknown key (known: input, output, cacheRead, cacheWrite; US dollars per million tokens)")
                }
                seen.insert(key)
            }
            guard seen.contains("input"), seen.contains("output") else { throw fail(base, "a price needs \"input\" and \"output\" (US dollars per million tokens)") }
            prices[model] = price
        }
        return prices
    }
}

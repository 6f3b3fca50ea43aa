import DroverWire

/// Tokens and money (SPEC section 12): an attempt's totals, or a task's sum over its attempts.
public struct TaskUsage: Sendable, Equatable {
    public var inputTokens = 0
    public var outputTokens = 0
    public var cacheReadTokens = 0
    public var cacheWriteTokens = 0
    public var costUsd = 0.0

    public init(inputTokens: Int = 0, outputTokens: Int = 0, cacheReadTokens: Int = 0, cacheWriteTokens: Int = 0, costUsd: Double = 0) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cacheReadTokens = cacheReadTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.costUsd = costUsd
    }

    /// What a token limit counts: input and output.
    public var tokens: Int { inputTokens + outputTokens }

    public var isZero: Bool { self == TaskUsage() }

    public static func + (a: TaskUsage, b: TaskUsage) -> TaskUsage {
        TaskUsage(inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens,
                  cacheReadTokens: a.cacheReadTokens + b.cacheReadTokens, cacheWriteTokens: a.cacheWriteTokens + b.cacheWriteTokens,
                  costUsd: a.costUsd + b.costUsd)
    }

    public static func - (a: TaskUsage, b: TaskUsage) -> TaskUsage {
        TaskUsage(inputTokens: a.inputTokens - b.inputTokens, outputTokens: a.outputTokens - b.outputTokens,
                  cacheReadTokens: a.cacheReadTokens - b.cacheReadTokens, cacheWriteTokens: a.cacheWriteTokens - b.cacheWriteTokens,
                  costUsd: a.costUsd - b.costUsd)
    }

    /// A usage frame's figures, priced from `prices` when the worker gave no cost.
    public init(_ figures: WorkerFrame.UsageFigures, price: Price?) {
        self.init(inputTokens: figures.inputTokens, outputTokens: figures.outputTokens,
                  cacheReadTokens: figures.cacheReadTokens ?? 0, cacheWriteTokens: figures.cacheWriteTokens ?? 0)
        costUsd = figures.costUsd ?? price?.cost(of: self) ?? 0
    }

    public var json: JSONObject {
        [
            "input_tokens": .number(Double(inputTokens)), "output_tokens": .number(Double(outputTokens)),
            "cache_read_tokens": .number(Double(cacheReadTokens)), "cache_write_tokens": .number(Double(cacheWriteTokens)),
            "cost_usd": .number(Self.rounded(costUsd)),
        ]
    }

    public init(json object: JSONObject) {
        self.init(inputTokens: object["input_tokens"]?.intValue ?? 0, outputTokens: object["output_tokens"]?.intValue ?? 0,
                  cacheReadTokens: object["cache_read_tokens"]?.intValue ?? 0, cacheWriteTokens: object["cache_write_tokens"]?.intValue ?? 0,
                  costUsd: object["cost_usd"]?.numberValue ?? 0)
    }

    /// Dollars to a millionth of a cent, so sums written and read back stay what they were.
    static func rounded(_ usd: Double) -> Double { (usd * 1e8).rounded() / 1e8 }
}

/// US dollars per million tokens of one model (config `prices`).
public struct Price: Sendable, Equatable {
    public var input: Double
    public var output: Double
    public var cacheRead: Double?
    public var cacheWrite: Double?

    public init(input: Double, output: Double, cacheRead: Double? = nil, cacheWrite: Double? = nil) {
        self.input = input
        self.output = output
        self.cacheRead = cacheRead
        self.cacheWrite = cacheWrite
    }

    /// Cached tokens cost the input price unless priced of their own.
    public func cost(of usage: TaskUsage) -> Double {
        (Double(usage.inputTokens) * input + Double(usage.outputTokens) * output
            + Double(usage.cacheReadTokens) * (cacheRead ?? input) + Double(usage.cacheWriteTokens) * (cacheWrite ?? input)) / 1_000_000
    }
}

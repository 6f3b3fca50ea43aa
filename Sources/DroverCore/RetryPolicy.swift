import DroverWire

/// Why an attempt may be tried again (SPEC section 11's `retryOn`).
public enum RetryReason: String, Sendable, CaseIterable {
    /// The worker sent `error` with `retryable: true`.
    case retryable
    /// The worker sent `rate_limit`, then ended without a result.
    case rateLimit = "rate_limit"
    /// It was running when a supervisor died (decided at recovery).
    case lost
    case exitCode = "exit_code", signal, stale, `protocol`
}

/// How an attempt's wait grows: `initial`, times `multiplier` per attempt, at most `max`,
/// each spread by ±`jitter` (a fraction) so that tasks cut off together do not come back together.
public struct Backoff: Sendable, Equatable {
    public var initialMs: Int
    public var multiplier: Double
    public var maxMs: Int
    public var jitter: Double

    public static let standard = Backoff(initialMs: 2_000, multiplier: 2, maxMs: 5 * 60_000, jitter: 0.2)

    public init(initialMs: Int, multiplier: Double, maxMs: Int, jitter: Double) {
        self.initialMs = initialMs
        self.multiplier = multiplier
        self.maxMs = maxMs
        self.jitter = jitter
    }

    /// The wait before attempt `next` (2 or more); `spread` in -1...1 picks where in the jitter.
    public func delayMs(beforeAttempt next: Int, spread: Double) -> Int {
        var delay = Double(initialMs)
        for _ in 0..<max(0, next - 2) { delay = min(Double(maxMs), delay * multiplier) }
        delay = min(Double(maxMs), delay)
        return max(0, Int((delay * (1 + jitter * max(-1, min(1, spread)))).rounded()))
    }
}

/// The retry settings of one level (config, agent, task); unset ones fall through.
public struct RetrySettings: Sendable, Equatable {
    public var retries: Int?
    public var retryOn: Set<RetryReason>?
    public var backoff: Backoff?

    public init() {}

    public static let defaultRetryOn: Set<RetryReason> = [.retryable, .rateLimit]

    public func over(_ base: RetrySettings) -> RetrySettings {
        var merged = base
        if let retries { merged.retries = retries }
        if let retryOn { merged.retryOn = retryOn }
        if let backoff { merged.backoff = backoff }
        return merged
    }

    public var resolved: RetryPolicy {
        RetryPolicy(retries: retries ?? 2, retryOn: retryOn ?? Self.defaultRetryOn, backoff: backoff ?? .standard)
    }

    /// The settings that are set, by their config names.
    func json() -> JSONObject {
        var object = JSONObject()
        if let retries { object["retries"] = .number(Double(retries)) }
        if let retryOn { object["retryOn"] = .array(RetryReason.allCases.filter(retryOn.contains).map { .string($0.rawValue) }) }
        if let backoff {
            object["retryBackoff"] = [
                "initial": .number(Double(backoff.initialMs)), "multiplier": .number(backoff.multiplier),
                "max": .number(Double(backoff.maxMs)), "jitter": .number(backoff.jitter),
            ]
        }
        return object
    }
}

/// The retry rule of one task, every value decided.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts after the first: at most `retries + 1` attempts in all.
    public var retries: Int
    public var retryOn: Set<RetryReason>
    public var backoff: Backoff

    public init(retries: Int, retryOn: Set<RetryReason>, backoff: Backoff) {
        self.retries = retries
        self.retryOn = retryOn
        self.backoff = backoff
    }

    public static let none = RetryPolicy(retries: 0, retryOn: [], backoff: .standard)
}

extension ConfigReader {
    static let retryKeys = ["retries", "retryOn", "retryBackoff"]

    /// A retry key; false when the key is not one.
    func readRetry(_ key: String, _ value: JSONValue, _ path: String, into retry: inout RetrySettings) throws(ConfigError) -> Bool {
        switch key {
        case "retries":
            retry.retries = try count(value, path)
        case "retryOn":
            var reasons: Set<RetryReason> = []
            for (index, name) in try strings(value, path).enumerated() {
                guard let reason = RetryReason(rawValue: name) else {
                    throw fail("\(path).\(index)", "unknown reason \"\(name)\" (known: \(RetryReason.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                reasons.insert(reason)
            }
            retry.retryOn = reasons
        case "retryBackoff":
            var backoff = retry.backoff ?? .standard
            for (name, member) in try object(value, path).members {
                let memberPath = "\(path).\(name)"
                switch name {
                case "initial": backoff.initialMs = try duration(member, memberPath)
                case "max": backoff.maxMs = try duration(member, memberPath)
                case "multiplier":
                    guard let n = member.numberValue, n >= 1, n <= 100 else { throw fail(memberPath, "expected a number from 1 to 100, found \(describe(member))") }
                    backoff.multiplier = n
                case "jitter":
                    guard let n = member.numberValue, n >= 0, n <= 1 else { throw fail(memberPath, "expected a fraction from 0 to 1, found \(describe(member))") }
                    backoff.jitter = n
                default:
                    throw fail(memberPath, "unknown key (known: initial, multiplier, max, jitter)")
                }
            }
            retry.backoff = backoff
        default:
            return false
        }
        return true
    }
}

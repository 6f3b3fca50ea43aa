import DroverCore
import Prometheus

/// The daemon's metrics in the Prometheus text format (README, "Metrics"), kept in a
/// swift-prometheus registry. Counters and histograms follow the supervisor's measures and
/// the tasks' ends as they happen, from the daemon's start; gauges are read afresh at each
/// scrape from the task table, the pools, the store and /proc.
final class DaemonMetrics {
    /// What a scrape reads off the daemon.
    struct Reading {
        /// Tasks the daemon knows, by status and reason ("" while it has none).
        var tasks: [TaskCount.Key: Int] = [:]
        var pools: [SlotPools.Usage] = []
        /// Per pool, the seconds its cooldown has left (absent: not cooling down).
        var cooldownSeconds: [String: Double] = [:]
        var slotsInUse = 0
        var openDescriptors = 0
        var writerBacklogBytes = 0
    }

    enum TaskCount {
        struct Key: Hashable {
            var status: TaskStatus
            var reason: String
        }
    }

    /// From the grant to the worker running: most take a millisecond or two (the durable
    /// start record, the spawn); a worktree or a sandbox take longer.
    static let spawnBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// A task's run, from a second to hours.
    static let durationBuckets: [Double] = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400]

    private let registry = PrometheusCollectorRegistry()
    private var taskGauges: [TaskCount.Key: Gauge] = [:]
    private var poolGauges: [String: [Gauge]] = [:]
    private let slotsInUse: Gauge
    private let openDescriptors: Gauge
    private let writerBacklog: Gauge

    init() {
        slotsInUse = registry.makeGauge(descriptor: Self.name("slots_in_use", help: "Slots in use in every pool together (under the global cap)."))
        openDescriptors = registry.makeGauge(descriptor: Self.name("open_descriptors", help: "The daemon's open file descriptors (/proc/self/fd)."))
        writerBacklog = registry.makeGauge(descriptor: Self.name(
            "writer_backlog", unit: "bytes", help: "Task output handed to the file writer and not yet written (a slow or full disk)."))
        // The histograms show from the start, empty, so that a dashboard finds them.
        _ = registry.makeValueHistogram(descriptor: Self.spawnLatency, buckets: Self.spawnBuckets)
        for status in [TaskStatus.completed, .error, .cancelled] { _ = durationHistogram(status) }
    }

    private func durationHistogram(_ status: TaskStatus) -> ValueHistogram {
        registry.makeValueHistogram(descriptor: Self.taskDuration, labels: [("status", status.rawValue)], buckets: Self.durationBuckets)
    }

    private static func name(_ name: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "drover", metricName: name, unitName: unit, helpText: help)
    }

    // MetricNameDescriptor is not Sendable, so these are made where they are used.
    private static var attempts: MetricNameDescriptor { name("attempts", unit: "total", help: "Attempts begun (a slot granted), by pool.") }
    private static var retries: MetricNameDescriptor { name("retries", unit: "total", help: "Attempts that ended and were tried again, by pool and the reason the attempt ended.") }
    private static var spawnLatency: MetricNameDescriptor { name(
        "spawn_latency", unit: "seconds", help: "From a slot's grant to the worker running: the durable start record, a worktree if any, the spawn.") }
    private static var taskDuration: MetricNameDescriptor { name(
        "task_duration", unit: "seconds", help: "How long ended tasks ran (their last attempt, started_at to ended_at), by status.") }
    private static var tokens: MetricNameDescriptor { name("tokens", unit: "total", help: "Tokens that workers reported, by provider, model and kind.") }
    private static var cost: MetricNameDescriptor { name("cost_usd", unit: "total", help: "Money that workers reported or prices gave, in US dollars, by provider and model.") }
    private static var tasks: MetricNameDescriptor { name("tasks", help: "Tasks the daemon knows, by status and reason (empty while a task has none).") }
    private static var poolInUse: MetricNameDescriptor { name("pool_slots_in_use", help: "Slots in use in the pool.") }
    private static var poolLimit: MetricNameDescriptor { name("pool_limit", help: "The pool's configured limit (0: unlimited).") }
    private static var poolEffectiveLimit: MetricNameDescriptor { name("pool_effective_limit", help: "The pool's limit now: below pool_limit while rate limits hold it down.") }
    private static var poolWaiting: MetricNameDescriptor { name("pool_waiting", help: "Tasks waiting for a slot of the pool.") }
    private static var poolCooldown: MetricNameDescriptor { name("pool_cooldown", unit: "seconds", help: "Seconds left of the pool's rate-limit cooldown (0: not cooling down).") }

    // MARK: as it happens

    func observe(_ measure: SupervisorMeasure) {
        switch measure {
        case .attemptBegan(let pool):
            registry.makeCounter(descriptor: Self.attempts, labels: [("pool", pool)]).increment()
        case .workerSpawned(_, let seconds):
            registry.makeValueHistogram(descriptor: Self.spawnLatency, buckets: Self.spawnBuckets).record(max(0, seconds))
        case .retried(let pool, let reason):
            registry.makeCounter(descriptor: Self.retries, labels: [("pool", pool), ("reason", reason.rawValue)]).increment()
        case .spent(let provider, let model, let usage):
            let labels = [("provider", provider ?? ""), ("model", model ?? "")]
            for (kind, count) in [("input", usage.inputTokens), ("output", usage.outputTokens),
                                  ("cache_read", usage.cacheReadTokens), ("cache_write", usage.cacheWriteTokens)] where count > 0 {
                registry.makeCounter(descriptor: Self.tokens, labels: labels + [("kind", kind)]).increment(by: Int64(count))
            }
            // A worker's totals can go down (a later frame correcting an earlier one): a
            // counter only counts up.
            if usage.costUsd > 0 { registry.makeCounter(descriptor: Self.cost, labels: labels).increment(by: usage.costUsd) }
        }
    }

    /// A task's end, as reported: its run goes into the duration histogram.
    func ended(_ snapshot: TaskSnapshot) {
        guard snapshot.status.isTerminal, let startedMs = snapshot.startedMs, let endedMs = snapshot.endedMs else { return }
        durationHistogram(snapshot.status).record(Double(max(0, endedMs - startedMs)) / 1000)
    }

    // MARK: at a scrape

    /// The text of every metric, with the gauges set from `reading`.
    func render(_ reading: Reading) -> [UInt8] {
        // A status and reason seen once stays, at 0 when no task has it now.
        for (key, gauge) in taskGauges where reading.tasks[key] == nil { gauge.set(to: 0) }
        for (key, count) in reading.tasks {
            let gauge = taskGauges[key] ?? registry.makeGauge(descriptor: Self.tasks, labels: [("status", key.status.rawValue), ("reason", key.reason)])
            taskGauges[key] = gauge
            gauge.set(to: Double(count))
        }
        // A pool a reload removed goes.
        let present = Set(reading.pools.map(\.pool))
        for (pool, gauges) in poolGauges where !present.contains(pool) {
            gauges.forEach(registry.unregisterGauge)
            poolGauges[pool] = nil
        }
        for usage in reading.pools {
            let gauges = poolGauges[usage.pool] ?? [Self.poolInUse, Self.poolLimit, Self.poolEffectiveLimit, Self.poolWaiting, Self.poolCooldown].map {
                registry.makeGauge(descriptor: $0, labels: [("pool", usage.pool)])
            }
            poolGauges[usage.pool] = gauges
            let values = [Double(usage.running), Double(usage.limit), Double(usage.effectiveLimit), Double(usage.waiting),
                          reading.cooldownSeconds[usage.pool] ?? 0]
            for (gauge, value) in zip(gauges, values) { gauge.set(to: value) }
        }
        slotsInUse.set(to: Double(reading.slotsInUse))
        openDescriptors.set(to: Double(reading.openDescriptors))
        writerBacklog.set(to: Double(reading.writerBacklogBytes))
        var text: [UInt8] = []
        text.reserveCapacity(16 << 10)
        registry.emit(into: &text)
        return Self.sortedByName(text)
    }

    /// The registry writes its families in no set order; people read them sorted. Every
    /// family here starts with its HELP line.
    static func sortedByName(_ text: [UInt8]) -> [UInt8] {
        let help = Array("# HELP ".utf8)
        var families: [ArraySlice<UInt8>] = []
        var start = 0
        var lineStart = 0
        while lineStart < text.count {
            if lineStart > start && text[lineStart...].starts(with: help) {
                families.append(text[start..<lineStart])
                start = lineStart
            }
            lineStart = (text[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? text.count - 1) + 1
        }
        if start < text.count { families.append(text[start...]) }
        families.sort { $0.lexicographicallyPrecedes($1) }
        return Array(families.joined())
    }
}

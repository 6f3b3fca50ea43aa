/// What the supervisor measures as tasks run, handed out as it happens (`Supervisor.onMeasure`)
/// for monitoring. Plain values: how they are counted or exported (the daemon's Prometheus
/// metrics) is the front end's business, so the core stays free of it.
public enum SupervisorMeasure: Sendable, Equatable {
    /// A slot was granted and an attempt begins in `pool`.
    case attemptBegan(pool: String)
    /// An attempt's worker runs, `seconds` after its slot was granted: the durable start
    /// record, the worktree if it has one, and the spawn itself.
    case workerSpawned(pool: String, seconds: Double)
    /// An attempt ended (`reason`) and another follows after its backoff.
    case retried(pool: String, reason: TaskReason)
    /// A worker's usage frame added this much to what `provider`/`model` spent.
    case spent(provider: String?, model: String?, TaskUsage)
}

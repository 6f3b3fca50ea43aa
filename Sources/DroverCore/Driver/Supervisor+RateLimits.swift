import DroverWire

/// Rate limits (SPEC 11): pools that cool down, and attempts that move to a fallback model.
extension Supervisor {
    /// A worker was refused for a rate limit: its pool, or every pool of its provider, cools
    /// down (no new attempt starts in it), and adapts its limit. Running tasks go on.
    func rateLimited(_ task: TaskDriver, retryAfterMs: Int?, scope: WorkerFrame.RateLimitScope) {
        let ids = pools.pools(limitedBy: task.pool.id, provider: scope == .provider ? task.record.provider : nil)
        let nowMs = loop.nowMs
        for cooldown in pools.rateLimited(ids, source: task.pool.id, retryAfterMs: retryAfterMs, nowMs: nowMs) {
            let event = PoolEvent(atMs: Clock.wallMs(), pool: cooldown.pool, status: .cooldown,
                                  untilMs: Clock.wallMs() + Int64(cooldown.untilMs - nowMs), retryAfterMs: retryAfterMs,
                                  limit: pools.usage.first { $0.pool == cooldown.pool }?.limit, effectiveLimit: cooldown.effectiveLimit, taskID: task.id)
            store.appendPoolEvent(event)
            onPoolEvent?(event)
            armCooldownEnd(cooldown.pool, at: cooldown.untilMs)
            if cooldown.started {
                for id in pools.waiters(in: cooldown.pool) { tasks[id]?.feed(.waiting(.cooldown)) }
            }
        }
    }

    func armCooldownEnd(_ pool: String, at untilMs: UInt64) {
        let timer = cooldownTimers[pool] ?? LoopTimer(loop: loop)
        cooldownTimers[pool] = timer
        timer.start(after: untilMs > loop.nowMs ? Int(untilMs - loop.nowMs) : 0) { [weak self] in self?.cooldownMayEnd(pool) }
    }

    func cooldownMayEnd(_ pool: String) {
        loop.refreshTime()
        guard let grants = pools.endCooldown(pool, nowMs: loop.nowMs) else {
            if let until = pools.cooldownUntil(pool) { armCooldownEnd(pool, at: until) }  // made longer meanwhile
            return
        }
        let event = PoolEvent(atMs: Clock.wallMs(), pool: pool, status: .cooldownEnd, limit: pools.usage.first { $0.pool == pool }?.limit,
                              effectiveLimit: pools.effectiveLimit(of: pool))
        store.appendPoolEvent(event)
        onPoolEvent?(event)
        for id in pools.waiters(in: pool) { tasks[id]?.feed(.waiting(.slot)) }
        startGranted(grants)
    }

    func fallback(for task: TaskDriver) -> (model: ModelChoice, assignment: PoolAssignment)? {
        let after = task.plan.agent.fallbackAfter ?? config.fallbackAfter
        guard !task.plan.agent.fallbackModels.isEmpty, let until = pools.cooldownUntil(task.pool.id), until > loop.nowMs + UInt64(after) else {
            return nil
        }
        for name in task.plan.agent.fallbackModels {
            let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let assignment = config.pool(provider: parts[0], model: parts[1], key: name)
            guard assignment.id != task.pool.id, pools.cooldownUntil(assignment.id) == nil else { continue }
            return (ModelChoice(provider: parts[0], model: parts[1], key: name, pool: assignment.id), assignment)
        }
        return nil
    }
}

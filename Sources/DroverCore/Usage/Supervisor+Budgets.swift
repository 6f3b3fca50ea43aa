import DroverWire

/// Usage and budgets (SPEC 12): usage frames priced and counted, and admission under budgets.
extension Supervisor {
    /// A worker's usage frame: priced (from `prices` when it gave no cost), counted against the
    /// budgets, appended to usage.jsonl, then handed back to its lifecycle.
    func usageReported(_ task: TaskDriver, _ figures: WorkerFrame.UsageFigures) {
        let record = task.record
        let price = record.provider.flatMap { provider in record.model.flatMap { config.prices["\(provider)/\($0)"] } }
        let usage = TaskUsage(figures, price: price)
        let line = UsageLine(atMs: Clock.wallMs(), taskID: record.id, attempt: record.attempt, agent: record.agent,
                             provider: record.provider, model: record.model, totals: usage)
        let added = budgets.record(line)
        if !added.isZero { onMeasure?(.spent(provider: record.provider, model: record.model, added)) }
        store.append(store.root + "/usage.jsonl", line.line)
        task.feed(.usage(usage))
        guard !budgets.isEmpty else { return }
        // A hard budget, once passed, ends the running tasks it covers.
        for budget in budgets.hardBudgetsPassed(by: spender(record), nowMs: line.atMs) {
            for id in running {
                guard let other = tasks[id], budget.scope.covers(agent: other.record.agent, provider: other.record.provider, model: other.record.model) else { continue }
                cancel(id, reason: .budget, message: "the hard budget \(budget.name) (\(budget.scope)) is spent")
            }
        }
    }

    func spender(_ record: TaskSnapshot) -> Budgets.Spender {
        Budgets.Spender(agent: record.agent, provider: record.provider, model: record.model)
    }

    /// At a slot's grant: the task may start only if every budget covering it has room for
    /// it. Else the slot goes back and the task waits (waiting_for budget), or ends
    /// cancelled(budget) when the spent amount alone leaves no room.
    func admitsUnderBudgets(_ task: TaskDriver, _ grant: SlotGrant) -> Bool {
        guard !budgets.isEmpty else { return true }
        let record = task.record
        let estimate = budgets.estimate(agent: record.agent, fixedCostUsd: task.plan.agent.estimateCostUsd)
        switch budgets.admission(of: task.id, spender(record), estimate: estimate, nowMs: Clock.wallMs()) {
        case .fits:
            budgets.reserve(task.id, spender(record), estimate: estimate)
            return true
        case .wait(_, let untilMs):
            granted.append(contentsOf: pools.release(grant))
            budgetWaiters.append(task)
            task.feed(.waiting(.budget))
            if let untilMs { armBudgetRecheck(atWallMs: untilMs) }
            return false
        case .refuse(_, let message):
            granted.append(contentsOf: pools.release(grant))
            task.feed(.cancel(.budget, message: message))
            return false
        }
    }

    func releaseReservation(of task: TaskDriver) {
        guard !budgets.isEmpty else { return }
        budgets.release(task.id)
        recheckBudgetWaiters()
    }

    /// Room may have come (a reservation released, spend left a window): the held-back
    /// tasks queue again at the head of their pools, where their grant checks again.
    func recheckBudgetWaiters() {
        guard !budgetWaiters.isEmpty, !draining else { return }
        let waiting = budgetWaiters
        budgetWaiters = []
        for task in waiting.reversed() where !task.record.status.isTerminal { enqueue(task, atHead: true) }
    }

    func armBudgetRecheck(atWallMs untilMs: Int64) {
        if let armed = budgetRecheckAtMs, armed <= untilMs, budgetTimer.isActive { return }
        budgetRecheckAtMs = untilMs
        budgetTimer.start(after: max(0, Int(untilMs - Clock.wallMs()))) { [weak self] in
            self?.budgetRecheckAtMs = nil
            self?.recheckBudgetWaiters()
        }
    }
}

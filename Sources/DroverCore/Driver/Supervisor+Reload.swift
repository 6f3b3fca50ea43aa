/// A daemon that loads another config (`drover reload`, SIGHUP) without stopping: tasks
/// that run keep what they started with; agents, timers and the rest apply to tasks
/// submitted from now on, and the new limits from the next grant.
extension Supervisor {
    public func reconfigure(_ new: DroverConfig) {
        loop.assertOnLoopThread()
        let budgetsChanged = new.budgets != config.budgets
        config = new
        if budgetsChanged {
            budgets = Budgets(budgets: new.budgets)
            for line in UsageLine.read(store.folder) { budgets.record(line) }
        }
        store.drainedBelow = new.maxBufferedBytes / 2
        startGranted(pools.relimit(global: new.globalConcurrency, adaptive: new.adaptiveConcurrency) { new.limit(ofPool: $0) })
    }
}

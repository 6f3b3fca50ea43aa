import CDroverSystem
import DroverCore
import DroverWire

/// `clean` and `retention` (SPEC 15): ended tasks' folders removed and the tasks forgotten.
extension DaemonServer {
    func clean(_ request: CleanRequest, _ connection: ControlConnection) {
        let needed = supervisor.neededTasks
        var removable: [String] = []
        var skipped: [CleanReply.Skipped] = []
        if !request.ids.isEmpty {
            var seen: Set<String> = []
            for id in request.ids where seen.insert(id).inserted {
                if let refusal = supervisor.refusalToForget(id, needed: needed) {
                    if case .unknown = refusal { return reply(connection, ErrorReply(code: 6, message: refusal.description)) }
                    skipped.append(CleanReply.Skipped(id: id, reason: refusal.description))
                } else {
                    removable.append(id)
                }
            }
        } else {
            let endedBefore = request.olderThanMs.map { Clock.wallMs() - Int64($0) }
            for row in supervisor.endedRows {
                if !request.statuses.isEmpty && !request.statuses.contains(row.status) { continue }
                if let endedBefore, (row.endedMs ?? row.createdMs) > endedBefore { continue }
                if let refusal = supervisor.refusalToForget(row.id, needed: needed) {
                    skipped.append(CleanReply.Skipped(id: row.id, reason: refusal.description))
                } else {
                    removable.append(row.id)
                }
            }
        }
        guard !request.dryRun else { return reply(connection, CleanReply(removed: removable, skipped: skipped, dryRun: true)) }
        forget(removable) { [unowned self] failures in
            if removable.count >= Self.manyForgotten { self.releaseFreedMemory() }
            guard !connection.isClosed else { return }
            if let failure = failures.first {
                return self.reply(connection, ErrorReply(code: 5, message: "forgot \(removable.count) task(s), but could not remove every folder: \(failure)"))
            }
            self.reply(connection, CleanReply(removed: removable, skipped: skipped, dryRun: false))
        }
    }

    /// Forgets tasks in the supervisor and in the daemon's own tables.
    func forget(_ ids: [String], whenRemoved: (([FileError]) -> Void)? = nil) {
        for id in ids { forgetCached(id) }
        supervisor.forget(ids, whenRemoved: whenRemoved)
    }

    /// Past this many tasks forgotten at once, the memory their rows held is handed back.
    static let manyForgotten = 1000

    /// Hands the heap's free pages back to the kernel (malloc does not on its own once
    /// they lie below memory still in use): the RSS then shows what the daemon keeps.
    func releaseFreedMemory() {
        _ = drover_release_free_memory()
    }

    // MARK: retention

    /// Applies `retention` now, and arms the timer for the next task to age out. Runs at
    /// start-up, after each end is reported (coalesced to one sweep per loop turn), and when
    /// the timer fires.
    func sweepRetention() {
        let retention = config.retention
        guard retention.isEnabled, !shuttingDown else { return }
        let rows = supervisor.endedRows
        let needed = supervisor.neededTasks
        let (remove, nextDueMs) = retention.sweep(ended: rows.map { ($0.id, $0.endedMs ?? $0.createdMs) }, protected: Set(needed.keys),
                                                  nowMs: Clock.wallMs())
        if !remove.isEmpty {
            writeLog("retention: removing \(remove.count) ended task(s)")
            forget(remove) { [unowned self] failures in
                for failure in failures { self.writeLog("retention: \(failure)") }
                if remove.count >= Self.manyForgotten { self.releaseFreedMemory() }
            }
        }
        retentionTimer.stop()
        if let nextDueMs {
            // Wall time may jump; the next sweep looks again and re-arms.
            retentionTimer.start(after: Int(max(0, min(nextDueMs - Clock.wallMs(), 24 * 3_600_000))) + 1) { [unowned self] in self.sweepRetention() }
        }
    }

    /// A task ended (it joins the ended rows once this report is done): with a count limit
    /// the oldest may have to go, and with an age limit the timer may need arming.
    func retentionAfterEnd() {
        let retention = config.retention
        let overCount = retention.maxEnded.map { supervisor.endedCount >= $0 } ?? false
        let unarmed = retention.keepEndedMs != nil && !retentionTimer.isActive
        if overCount || unarmed { scheduleRetentionSweep() }
    }

    private func scheduleRetentionSweep() {
        guard !retentionSweepQueued else { return }
        retentionSweepQueued = true
        retentionSoon.start(after: 0) { [unowned self] in
            self.retentionSweepQueued = false
            self.sweepRetention()
        }
    }
}

import DroverWire
import Glibc

/// A task's identity kept across runs: a row queued by a run that stopped runs again under it.
public struct TaskIdentity: Sendable, Equatable {
    public let id: String
    public let sessionID: String
    public let createdMs: Int64
    /// Attempts it had already made (a lost one tried again under `retryOn: ["lost"]`).
    public var attempts: [AttemptRecord] = []
}

/// What `drover run --resume` finds in its results folder for the rows of its manifest
/// (SPEC 16.1): a row that may have started is never run again.
struct BatchResume {
    /// Rows completed earlier: not run again.
    var completed: [Int: TaskSnapshot] = [:]
    /// Rows that may have been running when the earlier run stopped: error(lost) now.
    var lost: [Int: TaskSnapshot] = [:]
    /// Rows queued earlier that never started: they run now, under the same task id.
    var unstarted: [Int: TaskIdentity] = [:]

    /// `retryFailed`: rows lost in an earlier run run again too (as new tasks): the user asks
    /// for it, knowing their workers may have done part of their work.
    static func read(supervisor: Supervisor, entries: [ManifestEntry], retryFailed: Bool = false) -> BatchResume {
        let store = supervisor.store
        var resume = BatchResume()
        let journal = Journal(folder: store.folder)
        var records: [String: TaskSnapshot] = [:]
        var completedByRow: [String: TaskSnapshot] = [:]
        TaskFolders.forEach(store) { entry in
            switch entry {
            case .problem(let note):
                writeStandardError("drover: \(note)\n")
            case .task(let snapshot, let object):
                records[snapshot.id] = snapshot
                if snapshot.status == .completed, let row = object["manifest_row"]?.stringValue { completedByRow[row] = snapshot }
            }
        }
        for file in (try? store.folder.list(".")) ?? [] where file.name.hasSuffix(".tmp") && file.kind == .file {
            try? store.folder.removeFile(file.name)
        }
        // The newest task of each row, by where it first appears in the journal.
        var newest: [String: (id: String, line: Int)] = [:]
        for (id, entry) in journal.entries {
            guard let row = entry.tags["manifest_row"]?.stringValue else { continue }
            if newest[row].map({ $0.line < entry.firstLine }) ?? true { newest[row] = (id, entry.firstLine) }
        }
        var remains: [TaskSnapshot] = []
        for entry in entries {
            guard let (id, _) = newest[entry.identity], let recorded = journal.entries[id] else {
                if let done = completedByRow[entry.identity] { resume.completed[entry.line] = done }
                continue
            }
            if let snapshot = records[id] {
                if snapshot.status.isTerminal && recorded.ends == 0 {
                    // It ended, and the kill came before its journal line: the line follows the file.
                    store.appendEvent(TaskEvent(snapshot, atMs: snapshot.endedMs ?? Clock.wallMs()))
                }
                if snapshot.status == .completed {
                    resume.completed[entry.line] = snapshot
                } else if snapshot.reason == .lost {
                    if retryFailed { continue }  // asked for: it runs again, as a new task
                    resume.lost[entry.line] = snapshot  // lost in an earlier run: never run again
                } else if snapshot.status.isTerminal {
                    continue  // it failed: it runs again, as a new task
                } else if snapshot.status == .running || recorded.mayHaveStarted {
                    if let again = retriedIfAllowed(snapshot, entry, supervisor) {
                        resume.unstarted[entry.line] = again
                        remains.append(snapshot)
                        continue
                    }
                    let lost = FolderRecovery.recordLost(snapshot, in: store)
                    resume.lost[entry.line] = lost
                    remains.append(lost)
                } else {
                    resume.unstarted[entry.line] = TaskIdentity(id: id, sessionID: snapshot.sessionID, createdMs: snapshot.createdMs)
                }
            } else if recorded.mayHaveStarted {
                // It started before its task.json was due: rebuilt from its row.
                var request = entry.request
                request.extra["manifest_line"] = .number(Double(entry.line))
                request.extra["manifest_row"] = .string(entry.identity)
                let identity = TaskIdentity(id: id, sessionID: recorded.sessionID, createdMs: Clock.wallMs())
                guard var snapshot = try? supervisor.plannedRecord(for: request, identity: identity) else { continue }
                snapshot.status = .running
                snapshot.attempt = recorded.attempt
                if let again = retriedIfAllowed(snapshot, entry, supervisor) {
                    resume.unstarted[entry.line] = again
                    remains.append(snapshot)
                    continue
                }
                let lost = FolderRecovery.recordLost(snapshot, in: store)
                resume.lost[entry.line] = lost
                remains.append(lost)
            } else if recorded.ends == 0 {
                resume.unstarted[entry.line] = TaskIdentity(id: id, sessionID: recorded.sessionID, createdMs: Clock.wallMs())
            }
        }
        FolderRecovery.killRemains(of: remains)
        var notes: [String] = []
        for finished in WorktreeRecovery.finish(remains, store: store, git: supervisor.git, notes: &notes) {
            if let line = resume.lost.first(where: { $0.value.id == finished.id })?.key { resume.lost[line] = finished }
        }
        return resume
    }

    /// A row's lost attempt, to be tried again when its retry rule allows `lost`: its
    /// identity with the attempt recorded. Nil when the row ends error(lost).
    private static func retriedIfAllowed(_ snapshot: TaskSnapshot, _ entry: ManifestEntry, _ supervisor: Supervisor) -> TaskIdentity? {
        let policy = supervisor.retryPolicy(of: entry.request)
        let attempt = max(1, snapshot.attempt)
        guard policy.retryOn.contains(.lost), attempt <= policy.retries else { return nil }
        let lost = AttemptRecord(number: attempt, provider: snapshot.provider, model: snapshot.model, startedMs: snapshot.startedMs,
                                 endedMs: Clock.wallMs(), status: .error, reason: .lost, error: FolderRecovery.lostMessage)
        return TaskIdentity(id: snapshot.id, sessionID: snapshot.sessionID, createdMs: snapshot.createdMs, attempts: snapshot.attempts + [lost])
    }
}

import DroverWire
import Glibc

/// What a daemon finds in its state folder when it starts (SPEC 16.1, 16.2, 16.4): the tasks
/// to queue again, those that ended, and those an earlier supervisor may have started and
/// lost. What a crash left unfinished is finished through the store: a lost task gets its
/// end (task.json, then its journal line), a task.json that ended without its journal line
/// gets the line, and temporary files are removed. Nothing is ever run from a task.json
/// whose id is not a task id or not its folder's name, from one that does not parse, or
/// through a symlink.
public struct FolderRecovery {
    public var pending: [(snapshot: TaskSnapshot, request: TaskRequest)] = []
    public var ended: [(snapshot: TaskSnapshot, request: TaskRequest?)] = []
    /// Tasks that may have run when the earlier supervisor stopped, now recorded error(lost).
    public var lost: [TaskSnapshot] = []
    /// One line per thing worth telling the user (for the daemon's log).
    public var notes: [String] = []

    public static let lostMessage = "the supervisor stopped while it ran"

    /// `retryPolicy` says how a lost task's request may be tried again (`retryOn: ["lost"]`).
    /// `requestsOfEnded: false` leaves the requests of ended tasks unread (nil): a daemon
    /// keeps only their rows, and reads a request back from task.json when it needs one.
    public static func run(store: ResultStore, nowMs: Int64 = Clock.wallMs(), requestsOfEnded: Bool = true,
                           retryPolicy: (TaskRequest) -> RetryPolicy = { _ in .none }) -> FolderRecovery {
        var found = FolderRecovery()
        let journal = Journal(folder: store.folder)
        if journal.unreadableLines > 0 { found.notes.append("events.jsonl: \(journal.unreadableLines) line(s) that are not events were skipped") }
        // Each task.json's parsed document is dropped as soon as its record and request are
        // read from it: with 100,000 tasks, holding every document at once was most of the
        // daemon's peak memory.
        var snapshots: [(TaskSnapshot, TaskRequest?)] = []
        TaskFolders.forEach(store) { entry in
            switch entry {
            case .problem(let note):
                found.notes.append(note)
            case .task(let snapshot, let object):
                let wanted = requestsOfEnded || !snapshot.status.isTerminal
                snapshots.append((snapshot, wanted ? object["request"]?.objectValue.flatMap { TaskRequest(json: $0, snapshot: snapshot) } : nil))
            }
        }
        snapshots.sort { ($0.0.createdMs, $0.0.id) < ($1.0.createdMs, $1.0.id) }
        for (snapshot, request) in snapshots {
            let inJournal = journal.entries[snapshot.id]
            if snapshot.status.isTerminal {
                if (inJournal?.ends ?? 0) == 0 {
                    // It ended, and the crash came before its journal line: the line follows the file.
                    store.appendEvent(TaskEvent(snapshot, atMs: snapshot.endedMs ?? nowMs))
                }
                found.ended.append((snapshot, request))
                continue
            }
            if let recorded = inJournal, recorded.ends > 0 {
                // Only an old drover could leave this: the journal has the end, task.json not.
                var ended = snapshot
                ended.status = recorded.last
                ended.reason = recorded.lastReason
                ended.error = (ended.error.map { $0 + "; " } ?? "") + "its end was in events.jsonl but not in task.json"
                ended.endedMs = ended.endedMs ?? nowMs
                store.writeTask(ended)
                found.ended.append((ended, request))
                continue
            }
            let started = snapshot.status == .running || inJournal?.mayHaveStarted == true
            var snapshot = snapshot
            // The journal knows of an attempt that started before its task.json was rewritten.
            if let recorded = inJournal { snapshot.attempt = max(snapshot.attempt, recorded.attempt) }
            if !started, let request {
                found.pending.append((snapshot, request))
                continue
            }
            if started, let request, let again = retryLost(snapshot, policy: retryPolicy(request), in: store, nowMs: nowMs) {
                found.lost.append(again)
                found.pending.append((again, request))
                continue
            }
            let lost = recordLost(snapshot, in: store, message: started ? lostMessage : "its request could not be read back after a restart", nowMs: nowMs)
            if started { found.lost.append(lost) }
            found.ended.append((lost, request))
        }
        return found
    }

    /// Records a task as error(lost): task.json first, then its end in the journal. A
    /// result.md that the crash left without its task.json is not the task's: removed.
    public static func recordLost(_ snapshot: TaskSnapshot, in store: ResultStore, message: String = lostMessage, nowMs: Int64 = Clock.wallMs()) -> TaskSnapshot {
        var lost = snapshot
        lost.status = .error
        lost.reason = .lost
        lost.error = message
        lost.endedMs = lastHeardMs(snapshot, in: store) ?? nowMs
        lost.waitingFor = nil
        lost.resultPath = nil
        try? store.folder.removeFile("tasks/\(snapshot.id)/result.md")
        store.makeTaskDirectory(snapshot.id)
        store.writeTask(lost)
        store.appendEvent(TaskEvent(lost, atMs: nowMs))
        return lost
    }

    /// When a task that ran under a supervisor that died was last heard from: its last
    /// progress, or the last write to its transcript or task.json. Its end is put there, not
    /// at the restart, so that its duration does not count the time no supervisor ran.
    static func lastHeardMs(_ snapshot: TaskSnapshot, in store: ResultStore) -> Int64? {
        guard let started = snapshot.startedMs else { return nil }
        let signs = [snapshot.progress.lastUpdateMs, FileSystem.modifiedMs(store.transcriptFile(snapshot.id)),
                     FileSystem.modifiedMs(store.taskFile(snapshot.id))].compactMap { $0 }
        return max(started, signs.max() ?? started)
    }

    /// A lost attempt whose task may be tried again (`retryOn` has `lost`, attempts remain):
    /// the attempt is recorded as lost, and the task is pending again (task.json, then its
    /// journal line). Nil when it may not.
    public static func retryLost(_ snapshot: TaskSnapshot, policy: RetryPolicy, in store: ResultStore, nowMs: Int64 = Clock.wallMs()) -> TaskSnapshot? {
        let attempt = max(1, snapshot.attempt)
        guard policy.retryOn.contains(.lost), attempt <= policy.retries else { return nil }
        var again = snapshot
        again.attempt = attempt
        again.attempts.append(AttemptRecord(number: attempt, provider: snapshot.provider, model: snapshot.model, startedMs: snapshot.startedMs,
                                            endedMs: lastHeardMs(snapshot, in: store) ?? nowMs, status: .error, reason: .lost, error: lostMessage))
        again.status = .pending
        again.reason = .retry
        again.waitingFor = .retry
        again.error = nil
        again.resultPath = nil
        try? store.folder.removeFile("tasks/\(snapshot.id)/result.md")
        store.makeTaskDirectory(snapshot.id)
        store.writeTask(again)
        // Before the lines of its next start, which can come in the same batch. Should a crash
        // come between this line and task.json, the old task.json still says running: the
        // next recovery finds the same loss and counts it once.
        store.appendEvent(TaskEvent(again, atMs: nowMs))
        return again
    }

    /// Kills what is left of lost tasks: their process groups (never a process that merely
    /// reuses a pid), and every process of this user whose environment names one of them
    /// (a grandchild that called setsid left the group, but not that variable).
    public static func killRemains(of lost: [TaskSnapshot]) {
        for snapshot in lost {
            guard let pid = snapshot.pid, pid > 1 else { continue }
            // While the pid exists (alive, or a zombie nobody reaped) it must be the same
            // process, started when the task says; once it is gone, a group with its id can
            // only be the remains of the task's, since a new group takes the id of a live process.
            if FileSystem.exists("/proc/\(pid)") {
                guard let started = snapshot.startedMs, ProcessStartTime.isSameProcess(pid: pid, startedMs: started) else { continue }
            }
            kill(-pid, SIGKILL)
        }
        for (pid, _) in TaskProcessScan.find(taskIDs: Set(lost.map(\.id))) { kill(pid, SIGKILL) }
    }
}

/// The task folders under a root, read without trusting them.
enum TaskFolders {
    enum Entry {
        case task(TaskSnapshot, JSONObject)
        /// Something skipped, said for the log.
        case problem(String)
    }

    /// Every entry of tasks/, in name order, handed over one at a time (so a caller keeps
    /// only what it needs of each parsed task.json).
    static func forEach(_ store: ResultStore, _ body: (Entry) -> Void) {
        let folder = store.folder
        let found: [SafeFolder.Entry]
        do {
            found = try folder.list("tasks")
        } catch {
            return body(.problem("\(error)"))
        }
        for item in found.sorted(by: { $0.name < $1.name }) {
            let path = folder.fullPath("tasks/" + item.name)
            guard item.kind == .folder else {
                body(.problem("\(path): not a folder (\(item.kind == .symlink ? "a symlink, not followed" : "a file")), ignored"))
                continue
            }
            guard TaskIdentifiers.isTaskID(item.name) else {
                body(.problem("\(path): not a task folder (its name is not bg_ and 8 hex digits), ignored"))
                continue
            }
            let relative = "tasks/" + item.name
            let files = (try? folder.list(relative)) ?? []
            removeTemporaryFiles(files, in: relative, of: folder, body)
            guard let taskFile = files.first(where: { $0.name == "task.json" }) else { continue }  // never written: nothing was acknowledged
            guard taskFile.kind == .file else {
                body(.problem("\(path)/task.json: not a regular file (\(taskFile.kind == .symlink ? "a symlink, not followed" : "\(taskFile.kind)")), ignored"))
                continue
            }
            let parsed: JSONObject?
            do {
                parsed = try JSONParser.parse(try folder.read(relative + "/task.json")).value.objectValue
            } catch {
                body(.problem("\(path)/task.json: does not parse (\(error)), ignored"))
                continue
            }
            guard let object = parsed, let snapshot = TaskSnapshot(json: object) else {
                body(.problem("\(path)/task.json: not a task record, ignored"))
                continue
            }
            guard snapshot.id == item.name else {
                body(.problem("\(path)/task.json: its id \"\(snapshot.id.prefix(80))\" is not its folder's name, ignored"))
                continue
            }
            body(.task(snapshot, object))
        }
    }

    /// No `*.tmp` survives recovery: each is a write that a crash cut short.
    private static func removeTemporaryFiles(_ files: [SafeFolder.Entry], in relative: String, of folder: SafeFolder, _ body: (Entry) -> Void) {
        for file in files where file.name.hasSuffix(".tmp") && file.kind != .folder {
            try? folder.removeFile(relative + "/" + file.name)
            body(.problem("\(folder.fullPath(relative + "/" + file.name)): left by an interrupted write, removed"))
        }
    }
}

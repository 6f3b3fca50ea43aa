import Glibc

/// A background thread that writes files in batches. The loop thread hands it whole batches;
/// it coalesces them (one write per appended file, the last version of a replaced file) and
/// writes each in an order that keeps SPEC section 16's promises:
///
/// 1. journal lines that are not ends (a task queued, an attempt starting), appended to
///    events.jsonl and synced: the loop learns at once, so a worker waits for the record of
///    its start by one fdatasync, not by the rest of the batch;
/// 2. folders, then appends (transcripts, logs);
/// 3. replaced files (task.json, result.md): written under a temporary name, synced together,
///    renamed into place, so each is its old or its new version, never half of one;
/// 4. journal lines of ends (and of queued tasks whose task.json they announce), synced: no
///    end is on disk before the files that show it.
///
/// Writes refused for lack of space are kept and tried again with the next batch or every
/// 250 ms: a full disk delays files, it does not lose them. Progress says which batches were
/// tried and which are wholly on disk.
final class FileWriter: @unchecked Sendable {
    enum Job: Sendable {
        case makeDirectory(String)
        /// `owner`: the task whose output it is.
        case append(path: String, bytes: [UInt8], owner: String? = nil)
        /// Atomic replacement; the content is built on the writer thread.
        case replace(path: String, content: @Sendable () -> [UInt8])
        /// A line of events.jsonl; `afterFiles` for a task's end (or a line announcing a file).
        case journal(line: [UInt8], afterFiles: Bool, owner: String? = nil)
        /// A whole tree under the root (an ended task's folder that `clean` forgets), removed
        /// before the round's other writes, never following a link.
        case removeTree(String)
    }

    struct Progress: Sendable {
        /// Every non-final journal line of the batches up to this one is durable.
        var journaled: UInt64 = 0
        /// Every batch up to this one has been tried.
        var attempted: UInt64 = 0
        /// Every write of the batches up to this one is on disk.
        var durable: UInt64 = 0
        /// Every append of the batches up to this one has been tried, a backlog's too.
        var flushed: UInt64 = 0
        var errors: [FileError] = []
        /// Batches written together whose writes did not all succeed, with why.
        var failedBatches: [(ClosedRange<UInt64>, [FileError])] = []
    }

    static let retryIntervalMs = 250
    static let maxRetainedAppendBytes = 64 << 20

    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var queue: [(sequence: UInt64, jobs: [Job])] = []
    private var lastSubmitted: UInt64 = 0
    private var progress = Progress()
    private var stopping = false
    /// Tests hold the writer to play a disk that cannot keep up.
    private var held = false

    // The writer thread's own.
    private struct Retained {
        let sequence: UInt64
        let job: Job
    }
    /// Jobs refused for lack of space, oldest first, tried again later.
    private var retained: [Retained] = []
    private var journalFD: Int32 = -1

    private var thread = pthread_t()
    private let durable: Bool
    /// Every file is reached through it: nothing outside the root, no symlink followed.
    private let folder: SafeFolder
    private static let journalName = "events.jsonl"
    private let notify: @Sendable () -> Void
    /// When events.jsonl and usage.jsonl are rotated (SPEC 15).
    private let rotation: LogRotation

    /// `notify` runs on the writer thread whenever progress is made; it must only wake the loop.
    init(folder: SafeFolder, durable: Bool, rotation: LogRotation = LogRotation(), notify: @escaping @Sendable () -> Void) {
        self.folder = folder
        self.durable = durable
        self.rotation = rotation
        self.notify = notify
        // Open for the writer's whole life: one descriptor, from the start.
        journalFD = (try? folder.openForAppending(Self.journalName)) ?? -1
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            let writer = Unmanaged<FileWriter>.fromOpaque(context!).takeRetainedValue()
            writer.runLoop()
            return nil
        }, context)
    }

    /// Queues a batch; returns its sequence number.
    func submit(_ jobs: [Job]) -> UInt64 {
        lock.withLock {
            lastSubmitted += 1
            queue.append((lastSubmitted, jobs))
            lock.signal()
            return lastSubmitted
        }
    }

    /// Progress so far; the errors and failed batches are handed over once.
    func takeProgress() -> Progress {
        lock.withLock {
            let result = progress
            progress.errors = []
            progress.failedBatches = []
            return result
        }
    }

    /// Holds or releases the writing of batches (a test plays a slow disk with it).
    func hold(_ holding: Bool) {
        lock.withLock {
            held = holding
            lock.signal()
        }
    }

    /// Writes what is queued (and tries what a full disk refused once more), then ends the thread.
    func stop() {
        lock.withLock {
            stopping = true
            lock.signal()
        }
        pthread_join(thread, nil)
    }

    private func runLoop() {
        while true {
            var batches: [(sequence: UInt64, jobs: [Job])] = []
            var done = false
            lock.withLock {
                while (queue.isEmpty || held) && !stopping {
                    if retained.isEmpty {
                        lock.wait()
                    } else if !lock.wait(milliseconds: Self.retryIntervalMs) {
                        break
                    }
                }
                batches = queue
                queue = []
                done = stopping && batches.isEmpty
            }
            if !batches.isEmpty || !retained.isEmpty { write(batches) }
            if done {
                if journalFD >= 0 { close(journalFD) }
                return
            }
        }
    }

    // MARK: one round

    /// The jobs of one round, in the order they are written, each with its batch.
    private struct Round {
        var earlyJournal: [(UInt64, [UInt8])] = []
        var directories: [(UInt64, String)] = []
        var removals: [(UInt64, String)] = []
        var appendOrder: [String] = []
        var appends: [String: (sequence: UInt64, bytes: [UInt8])] = [:]
        var replaceOrder: [String] = []
        var replaces: [String: (sequence: UInt64, content: @Sendable () -> [UInt8])] = [:]
        var finalJournal: [(UInt64, [UInt8])] = []
        /// Who appends to each path, and how much each owner appends this round.
        var appendOwners: [String: Set<String>] = [:]
        var unownedAppends: Set<String> = []
        var ownerBytes: [String: Int] = [:]
        /// Owners whose task ends (or announces its file) this round.
        var closingOwners: Set<String> = []

        mutating func add(_ job: Job, _ sequence: UInt64) {
            switch job {
            case .journal(let line, let afterFiles, let owner):
                if afterFiles { finalJournal.append((sequence, line)) } else { earlyJournal.append((sequence, line)) }
                if afterFiles, let owner { closingOwners.insert(owner) }
            case .makeDirectory(let path):
                directories.append((sequence, path))
            case .removeTree(let path):
                removals.append((sequence, path))
            case .append(let path, let bytes, let owner):
                if let owner {
                    appendOwners[path, default: []].insert(owner)
                    ownerBytes[owner, default: 0] += bytes.count
                } else {
                    unownedAppends.insert(path)
                }
                if appends[path] == nil {
                    appendOrder.append(path)
                    appends[path] = (sequence, bytes)
                } else {
                    appends[path]!.bytes.append(contentsOf: bytes)
                }
            case .replace(let path, let content):
                // The last version wins; it carries the newest batch, which its durability waits for.
                if replaces[path] != nil { replaceOrder.removeAll { $0 == path } }
                replaceOrder.append(path)
                replaces[path] = (sequence, content)
            }
        }

        /// Paths whose appends may wait until after this round's files and ends: all of them
        /// output of tasks that write much and do not end now (a flood), so that a backlog
        /// never holds up other tasks' records (SPEC 16.5). A task's own end still follows
        /// all its output, since an ending owner's appends are never deferred.
        func deferrable(_ path: String) -> Bool {
            guard !unownedAppends.contains(path), let owners = appendOwners[path] else { return false }
            return owners.allSatisfy { !closingOwners.contains($0) && (ownerBytes[$0] ?? 0) >= FileWriter.deferredAppendBytes }
        }
    }

    /// An owner appending at least this much in a round is a backlog whose appends go last.
    static let deferredAppendBytes = 256 << 10

    private func write(_ batches: [(sequence: UInt64, jobs: [Job])]) {
        var round = Round()
        for kept in retained { round.add(kept.job, kept.sequence) }
        retained = []
        var retainedAppendBytes = 0
        let fresh = batches.isEmpty ? nil : batches.first!.sequence...batches.last!.sequence
        for batch in batches {
            for job in batch.jobs { round.add(job, batch.sequence) }
        }
        var failures: [FileError] = []
        var missingFolders: Set<String> = []
        /// Records a failure (once: a retry that fails again is not reported twice) and keeps
        /// the job for later when the disk was full.
        func failed(_ error: FileError, _ job: Job, _ sequence: UInt64) {
            if fresh?.contains(sequence) == true { failures.append(error) }
            let waitsForAFolder = error.code == ENOENT && missingFolders.contains(FileSystem.dirname(of: job.path))
            guard FileSystem.isLackOfSpace(error) || waitsForAFolder else { return }
            if case .append(_, let bytes, _) = job {
                // Kept within a bound, so a worker flooding a full disk cannot grow drover's memory.
                guard retainedAppendBytes + bytes.count <= Self.maxRetainedAppendBytes else {
                    failures.append(FileError(path: job.path, operation: "hold more for later (64 MiB already wait for room): dropped \(bytes.count) bytes of", code: error.code))
                    return
                }
                retainedAppendBytes += bytes.count
            }
            retained.append(Retained(sequence: sequence, job: job))
        }

        // 1. What must be durable before a worker starts.
        if !round.earlyJournal.isEmpty {
            if let error = appendJournal(round.earlyJournal.flatMap(\.1)) {
                for (sequence, line) in round.earlyJournal { failed(error, .journal(line: line, afterFiles: false, owner: nil), sequence) }
            }
        }
        let last = batches.last?.sequence
        let earliestUnjournaled = retained.map(\.sequence).min()
        lock.withLock {
            if let last { progress.journaled = max(progress.journaled, last) }
            if let earliestUnjournaled { progress.journaled = min(progress.journaled, earliestUnjournaled - 1) }
        }
        if !round.earlyJournal.isEmpty { notify() }

        // 2. Removals, folders and appends.
        for (sequence, path) in round.removals {
            // Only a path strictly under the root, reached without following a link.
            guard path.hasPrefix(folder.path + "/") else { continue }
            do { try folder.removeTree(relative(path)) } catch { failed(error, .removeTree(path), sequence) }
        }
        for (sequence, path) in round.directories {
            do { try folder.makeFolder(relative(path)) } catch {
                missingFolders.insert(path)
                failed(error, .makeDirectory(path), sequence)
            }
        }
        let deferred = round.appendOrder.filter(round.deferrable)
        for path in round.appendOrder where !round.deferrable(path) {
            let (sequence, bytes) = round.appends[path]!
            if let name = rotation.rotatedName(relative(path)) { rotation.rotateIfFull(name, adding: bytes.count, in: folder) }
            do { try folder.append(relative(path), bytes) } catch { failed(error, .append(path: path, bytes: bytes), sequence) }
        }

        // 3. Replacements: a few files are synced one by one; past that one syncfs is cheaper
        // (measured: under load, per-file fdatasync doubled the completion latency).
        let syncEach = durable && round.replaceOrder.count < 4
        var written: [String] = []
        for path in round.replaceOrder {
            let (sequence, content) = round.replaces[path]!
            do {
                try folder.write(relative(path) + ".tmp", content(), sync: syncEach)
                written.append(path)
            } catch {
                try? folder.removeFile(relative(path) + ".tmp")  // no half-written file is left beside the old one
                failed(error, .replace(path: path, content: content), sequence)
            }
        }
        if durable && !syncEach && !written.isEmpty { try? folder.syncFileSystem() }
        for path in written {
            do {
                try folder.rename(relative(path) + ".tmp", to: relative(path))
            } catch {
                try? folder.removeFile(relative(path) + ".tmp")
                let (sequence, content) = round.replaces[path]!
                failed(error, .replace(path: path, content: content), sequence)
            }
        }

        // 4. Ends, once the files that show them are in place.
        let blocked = retained.map(\.sequence).min()
        let finalLines = round.finalJournal.filter { blocked == nil || $0.0 < blocked! }
        let waiting = round.finalJournal.filter { blocked != nil && $0.0 >= blocked! }
        if !finalLines.isEmpty, let error = appendJournal(finalLines.flatMap(\.1)) {
            for (sequence, line) in finalLines { failed(error, .journal(line: line, afterFiles: true, owner: nil), sequence) }
        }
        // An end whose batch still waits for room waits with it, in order.
        for (sequence, line) in waiting { retained.append(Retained(sequence: sequence, job: .journal(line: line, afterFiles: true, owner: nil))) }

        let earliestRetained = retained.map(\.sequence).min()
        lock.withLock {
            if let last { progress.attempted = max(progress.attempted, last) }
            progress.durable = earliestRetained.map { $0 - 1 } ?? progress.attempted
            if deferred.isEmpty { progress.flushed = progress.attempted }
            progress.errors.append(contentsOf: failures)
            if let fresh, !failures.isEmpty { progress.failedBatches.append((fresh, failures)) }
        }
        notify()

        // 5. A backlog's output, now that everything else of the round is done.
        guard !deferred.isEmpty else { return }
        failures = []
        for path in deferred {
            let (sequence, bytes) = round.appends[path]!
            do { try folder.append(relative(path), bytes) } catch { failed(error, .append(path: path, bytes: bytes), sequence) }
        }
        let stillRetained = retained.map(\.sequence).min()
        lock.withLock {
            if let stillRetained { progress.durable = min(progress.durable, stillRetained - 1) }
            progress.flushed = progress.attempted
            progress.errors.append(contentsOf: failures)
        }
        notify()
    }

    /// Appends to events.jsonl all or nothing, synced when durable; the error, or nil.
    private func appendJournal(_ bytes: [UInt8]) -> FileError? {
        let path = folder.fullPath(Self.journalName)
        do {
            if journalFD >= 0, rotation.isFull(fd: journalFD, adding: bytes.count) {
                // The lines so far are durable under their new name; a new file starts.
                close(journalFD)
                journalFD = -1
                rotation.rotate(Self.journalName, in: folder)
            }
            if journalFD < 0 { journalFD = try folder.openForAppending(Self.journalName) }
            try FileSystem.appendAll(journalFD, bytes, path: path)
        } catch {
            return error
        }
        if durable && fdatasync(journalFD) != 0 { return FileError(path: path, operation: "sync", code: errno) }
        return nil
    }

    /// A path of the store as the folder takes it. The store only asks for paths under its
    /// root; anything else is refused, never written.
    private func relative(_ path: String) -> String {
        let prefix = folder.path + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : "/" + path
    }
}

extension FileWriter.Job {
    var path: String {
        switch self {
        case .makeDirectory(let path), .removeTree(let path), .append(let path, _, _), .replace(let path, _): path
        case .journal: "events.jsonl"
        }
    }
}

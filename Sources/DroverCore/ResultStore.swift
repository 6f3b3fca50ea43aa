import CLibUV
import DroverWire
import Glibc

/// The files of SPEC section 6 under one root (a state folder or a `drover run` results
/// folder). Writes made during a loop iteration are collected and handed to the writer
/// thread as one batch at the end of it. Three moments of a batch can be waited for, each
/// on the loop: its journal lines that are not ends are durable (`whenJournaled`: a worker
/// may start), it was written (`whenWritten`, with what failed), and all of it is on disk
/// (`whenDurable`: only then is a state change reported).
///
/// It also counts, per task, the bytes handed over but not yet written, so the supervisor
/// can stop reading a worker whose output outpaces the disk (SPEC 16.5).
public final class ResultStore {
    public let root: String
    /// The root, reached without following any symlink below it (SPEC 16.4).
    public let folder: SafeFolder
    private let writer: FileWriter
    private let loop: EventLoop
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let beforePoll: UnsafeMutablePointer<uv_prepare_t>
    private let afterPoll: UnsafeMutablePointer<uv_check_t>
    private var batch: [FileWriter.Job] = []
    private var batchOwners: [String: Int] = [:]
    private var closed = false
    private var closing = false
    /// Folders and files to remove, handed to the writer a chunk at a time.
    private var removals = RemovalQueue()

    /// Actions waiting for the batch being collected, then for a submitted one.
    private struct Waiters<Action> {
        var collecting: [Action] = []
        var submitted: [(sequence: UInt64, action: Action)] = []

        var isEmpty: Bool { collecting.isEmpty && submitted.isEmpty }

        mutating func commit(_ sequence: UInt64) {
            for action in collecting { submitted.append((sequence, action)) }
            collecting = []
        }

        mutating func take(through sequence: UInt64) -> [(sequence: UInt64, action: Action)] {
            let count = submitted.prefix { $0.sequence <= sequence }.count
            defer { submitted.removeFirst(count) }
            return Array(submitted.prefix(count))
        }
    }

    private var journalWaiters = Waiters<() -> Void>()
    private var writeWaiters = Waiters<([FileError]) -> Void>()
    private var durableWaiters = Waiters<() -> Void>()
    private var flushWaiters = Waiters<() -> Void>()
    private var ownerBatches: [(sequence: UInt64, bytes: [String: Int])] = []
    private var unwritten: [String: Int] = [:]
    private var unwrittenTotal = 0
    /// The last record asked for each task whose task.json is not yet on disk, with the
    /// batch it went out in (nil: the batch being collected). What reads a task.json back
    /// reads this first, so it never sees an older record than the one the daemon holds.
    private var unwrittenRecords: [String: (snapshot: TaskSnapshot, sequence: UInt64?)] = [:]
    private var collectingRecords: [String] = []
    private var submittedRecords: [(sequence: UInt64, taskIDs: [String])] = []

    /// Called on the loop with every write that failed (a full disk, say).
    public var onWriteError: (FileError) -> Void = { error in
        writeStandardError("drover: \(error)\n")
    }

    /// A task's unwritten bytes fell to `drainedBelow` or less (from above it).
    public var onDrained: (String) -> Void = { _ in }
    public var drainedBelow = 4 << 20

    /// Opens (creating) the root. `durable: false` skips the syncs (tests, scratch runs).
    public init(loop: EventLoop, root: String, durable: Bool = true, rotation: LogRotation = LogRotation()) throws(FileError) {
        folder = try SafeFolder(root: root, create: true)
        try folder.makeFolder("tasks")
        try folder.makeFolder("sessions")
        self.root = folder.path
        self.loop = loop
        wakeup = allocateHandle(uv_async_t.self)
        beforePoll = allocateHandle(uv_prepare_t.self)
        afterPoll = allocateHandle(uv_check_t.self)
        let asyncHandle = SendableHandle(pointer: UnsafeMutableRawPointer(wakeup))
        writer = FileWriter(folder: folder, durable: durable, rotation: rotation) {
            uv_async_send(asyncHandle.pointer.assumingMemoryBound(to: uv_async_t.self))
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        uv_async_init(loop.raw, wakeup) { handle in
            Unmanaged<ResultStore>.fromOpaque(handle!.pointee.data).takeUnretainedValue().collectProgress()
        }
        wakeup.pointee.data = me
        uv_unref(asHandle(wakeup))
        uv_prepare_init(loop.raw, beforePoll)
        beforePoll.pointee.data = me
        uv_prepare_start(beforePoll) { handle in
            Unmanaged<ResultStore>.fromOpaque(handle!.pointee.data).takeUnretainedValue().commit()
        }
        uv_unref(asHandle(beforePoll))
        uv_check_init(loop.raw, afterPoll)
        afterPoll.pointee.data = me
        uv_check_start(afterPoll) { handle in
            Unmanaged<ResultStore>.fromOpaque(handle!.pointee.data).takeUnretainedValue().commit()
        }
        uv_unref(asHandle(afterPoll))
    }

    deinit { close() }

    // MARK: paths

    public func taskDirectory(_ taskID: String) -> String { root + "/tasks/" + taskID }
    public func taskFile(_ taskID: String) -> String { taskDirectory(taskID) + "/task.json" }
    public func resultFile(_ taskID: String) -> String { taskDirectory(taskID) + "/result.md" }
    public func transcriptFile(_ taskID: String) -> String { taskDirectory(taskID) + "/transcript.jsonl" }
    public func stderrFile(_ taskID: String) -> String { taskDirectory(taskID) + "/stderr.log" }
    public func sessionFile(_ sessionID: String) -> String { root + "/sessions/" + sessionID + ".jsonl" }
    public var eventsFile: String { root + "/events.jsonl" }

    // MARK: writes (loop thread)

    /// Creates a task's folder with the next batch, before that batch's files.
    public func makeTaskDirectory(_ taskID: String) {
        removals.keep(taskDirectory(taskID))
        batch.append(.makeDirectory(taskDirectory(taskID)))
    }

    /// Creates a task's folder now (when a file must exist before the batch runs).
    public func createTaskDirectoryNow(_ taskID: String) throws(FileError) {
        removals.keep(taskDirectory(taskID))
        try folder.makeFolder("tasks/" + taskID)
    }

    /// A path under the root as the folder takes it (nil for one outside it).
    public func relative(_ path: String) -> String? {
        let prefix = root + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
    }

    public func writeTask(_ snapshot: TaskSnapshot) {
        let previous = unwrittenRecords.updateValue((snapshot, nil), forKey: snapshot.id)
        if previous.map({ $0.sequence != nil }) ?? true { collectingRecords.append(snapshot.id) }
        batch.append(.replace(path: taskFile(snapshot.id)) {
            var bytes: [UInt8] = []
            JSONWriter.writeObject(snapshot.json(), into: &bytes)
            bytes.append(0x0A)
            return bytes
        })
    }

    /// The record last given to `writeTask` for a task whose task.json is not on disk yet.
    public func unwrittenRecord(_ taskID: String) -> TaskSnapshot? { unwrittenRecords[taskID]?.snapshot }

    /// Removes an ended task's folder: queued, and handed to the writer in chunks of
    /// `RemovalQueue.chunkSize` (each before the other writes of its round), so that
    /// removing thousands never holds other writes up for more than about one chunk.
    public func removeTaskDirectory(_ taskID: String) {
        removals.add(taskDirectory(taskID))
        uv_ref(asHandle(wakeup))
    }

    /// Removes a session's transcript, queued with the folders.
    public func removeSessionFile(_ sessionID: String) {
        removals.add(sessionFile(sessionID))
        uv_ref(asHandle(wakeup))
    }

    /// Runs `action` on the loop once every removal asked for so far has been tried, with
    /// those that failed (the removed path itself, or a file under it).
    public func whenRemoved(_ action: @escaping ([FileError]) -> Void) {
        if !removals.whenTried(action) { whenWritten { (_: [FileError]) in action([]) } }
    }

    public func writeResult(_ taskID: String, text: String) {
        let bytes = Array(text.utf8)
        batch.append(.replace(path: resultFile(taskID)) { bytes })
    }

    /// Appends to a file; `owner` is the task whose output it is (counted until written).
    public func append(_ path: String, _ bytes: [UInt8], owner: String? = nil) {
        removals.keep(path)
        batch.append(.append(path: path, bytes: bytes, owner: owner))
        if let owner {
            batchOwners[owner, default: 0] += bytes.count
            unwritten[owner, default: 0] += bytes.count
            unwrittenTotal += bytes.count
        }
    }

    /// A line of events.jsonl. An end, or a line that must follow the batch's files (a
    /// queued task whose task.json it announces), is written after them; anything else
    /// before them, synced, so a worker can start on it.
    public func appendEvent(_ event: TaskEvent, afterFiles: Bool = false) {
        batch.append(.journal(line: event.line, afterFiles: afterFiles || event.status.isTerminal, owner: event.taskID))
    }

    /// A pool's line of events.jsonl (a cooldown's start or end).
    public func appendPoolEvent(_ event: PoolEvent) {
        batch.append(.journal(line: event.line, afterFiles: false))
    }

    /// Bytes of `owner` handed to the store and not yet written.
    public func unwrittenBytes(of owner: String) -> Int { unwritten[owner] ?? 0 }

    /// Task output handed to the store and not yet written, every task's together: the
    /// writer's backlog (a slow or full disk shows here first).
    public var unwrittenBytes: Int { unwrittenTotal }

    /// Runs `action` on the loop once every journal line so far that is not an end is durable.
    public func whenJournaled(_ action: @escaping () -> Void) {
        journalWaiters.collecting.append(action)
        uv_ref(asHandle(wakeup))
    }

    /// Runs `action` on the loop once every write requested so far has been tried.
    public func whenWritten(_ action: @escaping () -> Void) {
        whenWritten { (_: [FileError]) in action() }
    }

    /// The same, telling which writes of the action's own batch failed (none: all of them
    /// are written).
    public func whenWritten(_ action: @escaping ([FileError]) -> Void) {
        writeWaiters.collecting.append(action)
        uv_ref(asHandle(wakeup))
    }

    /// Runs `action` once every append requested so far has been tried (a busy worker's
    /// output included, which may go after other tasks' files): what reads a transcript waits for.
    public func whenFlushed(_ action: @escaping () -> Void) {
        flushWaiters.collecting.append(action)
        uv_ref(asHandle(wakeup))
    }

    /// Runs `action` once every write requested so far, and everything before it, is on disk
    /// (after a full disk, only once there was room for all of it).
    public func whenDurable(_ action: @escaping () -> Void) {
        durableWaiters.collecting.append(action)
        uv_ref(asHandle(wakeup))
    }

    /// Runs just before each batch is handed over (the supervisor adds task.json files
    /// whose progress changed, once per batch rather than once per frame).
    public var beforeCommit: () -> Void = {}

    private var hasWaiters: Bool {
        !journalWaiters.isEmpty || !writeWaiters.isEmpty || !durableWaiters.isEmpty || !flushWaiters.isEmpty || !removals.isIdle
    }

    /// Hands the collected batch to the writer thread.
    public func commit() {
        loop.assertOnLoopThread()
        beforeCommit()
        guard !closed else { return }
        // The next chunk of removals once the writer is done with the last; on closing, the rest.
        let chunk = removals.takeChunk(all: closing)
        if let chunk { batch.append(contentsOf: chunk.map { FileWriter.Job.removeTree($0) }) }
        let waiting = !journalWaiters.collecting.isEmpty || !writeWaiters.collecting.isEmpty || !durableWaiters.collecting.isEmpty
            || !flushWaiters.collecting.isEmpty || chunk != nil
        guard !batch.isEmpty || waiting else { return }
        let sequence = writer.submit(batch)
        batch = []
        if chunk != nil { removals.handedOver(in: sequence) }
        if !batchOwners.isEmpty {
            ownerBatches.append((sequence, batchOwners))
            batchOwners = [:]
        }
        if !collectingRecords.isEmpty {
            for id in collectingRecords { unwrittenRecords[id]?.sequence = sequence }
            submittedRecords.append((sequence, collectingRecords))
            collectingRecords = []
        }
        journalWaiters.commit(sequence)
        writeWaiters.commit(sequence)
        durableWaiters.commit(sequence)
        flushWaiters.commit(sequence)
    }

    private func collectProgress() {
        let progress = writer.takeProgress()
        for error in progress.errors { onWriteError(error) }
        let journaled = journalWaiters.take(through: progress.journaled)
        let written = writeWaiters.take(through: progress.attempted)
        let durable = durableWaiters.take(through: progress.durable)
        let flushed = flushWaiters.take(through: progress.flushed)
        let removed = removals.progress(attempted: progress.attempted, failedBatches: progress.failedBatches)
        var drained: [String] = []
        while let first = ownerBatches.first, first.sequence <= progress.flushed {
            ownerBatches.removeFirst()
            for (owner, bytes) in first.bytes {
                let before = unwritten[owner] ?? 0
                let after = before - bytes
                unwritten[owner] = after > 0 ? after : nil
                unwrittenTotal -= before - max(after, 0)
                if before > drainedBelow && after <= drainedBelow { drained.append(owner) }
            }
        }
        while let first = submittedRecords.first, first.sequence <= progress.durable {
            submittedRecords.removeFirst()
            // Unless written again since, in a later batch.
            for id in first.taskIDs where unwrittenRecords[id]?.sequence == first.sequence { unwrittenRecords[id] = nil }
        }
        if !hasWaiters { uv_unref(asHandle(wakeup)) }
        for (_, action) in journaled { action() }
        for (sequence, action) in written {
            action(progress.failedBatches.filter { $0.0.contains(sequence) }.flatMap(\.1))
        }
        for (action, failures) in removed { action(failures) }
        for owner in drained { onDrained(owner) }
        for (_, action) in durable { action() }
        for (_, action) in flushed { action() }
    }

    /// Holds or releases the writer thread: while held, batches queue and nothing is written
    /// (a test's slow disk).
    func holdWriter(_ holding: Bool) { writer.hold(holding) }

    /// Writes everything still pending and stops the writer thread. Waiting actions run for
    /// what got written.
    public func close() {
        guard !closed else { return }
        closing = true
        commit()
        closed = true
        writer.stop()
        collectProgress()
        closeAndFree(wakeup)
        closeAndFree(beforePoll)
        closeAndFree(afterPoll)
    }
}

/// A raw handle pointer handed to the writer thread, which only passes it to uv_async_send
/// (the one libuv call that is safe from any thread).
struct SendableHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
}

/// A warning of drover's own ("drover: " and a newline are the caller's, for the plain form).
func writeStandardError(_ text: String) {
    var message = text.hasPrefix("drover: ") ? String(text.dropFirst("drover: ".count)) : text
    if message.hasSuffix("\n") { message.removeLast() }
    DroverLog.logger.warning("\(message)")
}

import CLibUV
import DroverWire
import Glibc

/// The files of SPEC section 6 under one root (a state folder or a `drover run` results
/// folder). Writes made during a loop iteration are collected and handed to the writer
/// thread as one batch at the end of it; `whenWritten` runs an action on the loop once
/// everything asked for so far is on disk.
public final class ResultStore {
    public let root: String
    private let writer: FileWriter
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let beforePoll: UnsafeMutablePointer<uv_prepare_t>
    private let afterPoll: UnsafeMutablePointer<uv_check_t>
    private var batch: [FileWriter.Job] = []
    private var batchWaiters: [([FileError]) -> Void] = []
    private var waiters: [(sequence: UInt64, action: ([FileError]) -> Void)] = []
    private var closed = false

    /// Called on the loop with every write that failed (a full disk, say).
    public var onWriteError: (FileError) -> Void = { error in
        writeStandardError("drover: \(error)\n")
    }

    /// Opens (creating) the root. `durable: false` skips the syncs (tests, scratch runs).
    public init(loop: EventLoop, root: String, durable: Bool = true) throws(FileError) {
        let root = FileSystem.absolute(root)
        try FileSystem.makeDirectories(root + "/tasks")
        try FileSystem.makeDirectories(root + "/sessions")
        self.root = root
        wakeup = allocateHandle(uv_async_t.self)
        beforePoll = allocateHandle(uv_prepare_t.self)
        afterPoll = allocateHandle(uv_check_t.self)
        let asyncHandle = SendableHandle(pointer: UnsafeMutableRawPointer(wakeup))
        writer = FileWriter(syncRoot: root, durable: durable) {
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
        batch.append(.makeDirectory(taskDirectory(taskID)))
    }

    /// Creates a task's folder now (when a file must exist before the batch runs).
    public func createTaskDirectoryNow(_ taskID: String) throws(FileError) {
        try FileSystem.makeDirectories(taskDirectory(taskID))
    }

    public func writeTask(_ snapshot: TaskSnapshot) {
        batch.append(.replace(path: taskFile(snapshot.id)) {
            var bytes: [UInt8] = []
            JSONWriter.writeObject(snapshot.json(), into: &bytes)
            bytes.append(0x0A)
            return bytes
        })
    }

    public func writeResult(_ taskID: String, text: String) {
        let bytes = Array(text.utf8)
        batch.append(.replace(path: resultFile(taskID)) { bytes })
    }

    public func append(_ path: String, _ bytes: [UInt8]) {
        batch.append(.append(path: path, bytes: bytes))
    }

    public func appendEvent(_ snapshot: TaskSnapshot, atMs: Int64) {
        var line: [UInt8] = []
        let event: JSONObject = [
            "t": .number(Double(atMs)), "task_id": .string(snapshot.id), "session_id": .string(snapshot.sessionID),
            "status": .string(snapshot.status.rawValue), "reason": JSONValue(snapshot.reason?.rawValue),
        ]
        JSONWriter.writeObject(event, into: &line)
        line.append(0x0A)
        append(eventsFile, line)
    }

    /// Runs `action` on the loop once every write requested so far has been done.
    public func whenWritten(_ action: @escaping () -> Void) {
        whenWritten { (_: [FileError]) in action() }
    }

    /// The same, telling which writes of the action's own batch failed (none: all of them,
    /// and everything before them, are on disk).
    public func whenWritten(_ action: @escaping ([FileError]) -> Void) {
        batchWaiters.append(action)
        uv_ref(asHandle(wakeup))
    }

    /// Runs just before each batch is handed over (the supervisor adds task.json files
    /// whose progress changed, once per batch rather than once per frame).
    public var beforeCommit: () -> Void = {}

    /// Hands the collected batch to the writer thread.
    public func commit() {
        beforeCommit()
        guard !batch.isEmpty || !batchWaiters.isEmpty, !closed else { return }
        let sequence = writer.submit(batch)
        batch = []
        for action in batchWaiters { waiters.append((sequence, action)) }
        batchWaiters = []
    }

    private func collectProgress() {
        let (completed, errors, failedBatches) = writer.takeProgress()
        for error in errors { onWriteError(error) }
        var ready: [(([FileError]) -> Void, [FileError])] = []
        while let first = waiters.first, first.sequence <= completed {
            let failures = failedBatches.filter { $0.0.contains(first.sequence) }.flatMap(\.1)
            ready.append((first.action, failures))
            waiters.removeFirst()
        }
        if waiters.isEmpty && batchWaiters.isEmpty { uv_unref(asHandle(wakeup)) }
        for (action, failures) in ready { action(failures) }
    }

    /// Writes everything still pending and stops the writer thread. Waiting actions run.
    public func close() {
        guard !closed else { return }
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

func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

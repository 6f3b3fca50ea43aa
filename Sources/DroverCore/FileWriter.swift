import CDroverSystem
import CLibUV
import Glibc

/// A background thread that writes files in batches. The loop thread hands it whole batches;
/// it coalesces them (one write per appended file, the last version of a replaced file),
/// makes the batch durable with one sync, and then renames every replaced file into place,
/// so each file is either its old or its new version, never half of one.
final class FileWriter: @unchecked Sendable {
    enum Job: Sendable {
        case makeDirectory(String)
        case append(path: String, bytes: [UInt8])
        /// Atomic replacement; the content is built on the writer thread.
        case replace(path: String, content: @Sendable () -> [UInt8])
    }

    // All of the following is guarded by `mutex`.
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var queue: [(sequence: UInt64, jobs: [Job])] = []
    private var lastSubmitted: UInt64 = 0
    private var lastCompleted: UInt64 = 0
    private var errors: [FileError] = []
    /// Batches written together whose writes did not all succeed, with why.
    private var failedBatches: [(ClosedRange<UInt64>, [FileError])] = []
    private var stopping = false

    // Only the writer thread touches these.
    /// Jobs that failed for lack of space, tried again later.
    private var retained: [Job] = []
    private var retainedAppendBytes = 0
    static let retryIntervalMs = 250
    static let maxRetainedAppendBytes = 64 << 20

    private var thread = pthread_t()
    private let durable: Bool
    private let syncRoot: String
    private let notify: @Sendable () -> Void

    /// `notify` runs on the writer thread after each batch; it must only wake the loop.
    init(syncRoot: String, durable: Bool, notify: @escaping @Sendable () -> Void) {
        self.syncRoot = syncRoot
        self.durable = durable
        self.notify = notify
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            let writer = Unmanaged<FileWriter>.fromOpaque(context!).takeRetainedValue()
            writer.runLoop()
            return nil
        }, context)
    }

    /// Queues a batch; returns its sequence number.
    func submit(_ jobs: [Job]) -> UInt64 {
        pthread_mutex_lock(&mutex)
        lastSubmitted += 1
        let sequence = lastSubmitted
        queue.append((sequence, jobs))
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&mutex)
        return sequence
    }

    /// The newest batch written, the errors met since the last call, and which batches
    /// they belong to.
    func takeProgress() -> (completed: UInt64, errors: [FileError], failedBatches: [(ClosedRange<UInt64>, [FileError])]) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let result = (lastCompleted, errors, failedBatches)
        errors = []
        failedBatches = []
        return result
    }

    /// Writes what is queued, then ends the thread.
    func stop() {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&mutex)
        pthread_join(thread, nil)
    }

    private func runLoop() {
        while true {
            pthread_mutex_lock(&mutex)
            while queue.isEmpty && !stopping {
                if retained.isEmpty {
                    pthread_cond_wait(&wake, &mutex)
                } else if waitForWork(milliseconds: Self.retryIntervalMs) == ETIMEDOUT {
                    break
                }
            }
            let batches = queue
            queue = []
            let done = stopping && batches.isEmpty
            pthread_mutex_unlock(&mutex)
            if batches.isEmpty {
                // Room may have come back: try what a full disk refused (once more when stopping).
                if !retained.isEmpty { _ = write([]) }
                if done { return }
                continue
            }
            let failures = write(batches.flatMap(\.jobs))
            pthread_mutex_lock(&mutex)
            lastCompleted = batches.last!.sequence
            errors.append(contentsOf: failures)
            if !failures.isEmpty { failedBatches.append((batches.first!.sequence...batches.last!.sequence, failures)) }
            pthread_mutex_unlock(&mutex)
            notify()
        }
    }

    /// Waits on `wake` (the mutex held) for at most `milliseconds`; returns the wait's result.
    private func waitForWork(milliseconds: Int) -> Int32 {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + milliseconds * 1_000_000
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        return pthread_cond_timedwait(&wake, &mutex, &deadline)
    }

    /// Writes the jobs that failed for lack of space earlier, then `jobs`; returns the
    /// failures of `jobs` (a retry that fails again is not reported twice). Jobs that fail
    /// for lack of space are kept and tried again with the next batch, or after
    /// `retryIntervalMs`: a full disk delays files, it does not lose them.
    private func write(_ jobs: [Job]) -> [FileError] {
        let retries = retained
        retained = []
        retainedAppendBytes = 0
        var freshPaths: Set<String> = []
        for job in jobs {
            switch job {
            case .makeDirectory(let path), .append(let path, _), .replace(let path, _): freshPaths.insert(path)
            }
        }
        var failures: [FileError] = []
        func failed(_ error: FileError, retry job: Job?) {
            if freshPaths.contains(error.path) || job.map({ freshPaths.contains($0.path) }) == true { failures.append(error) }
            guard let job, FileSystem.isLackOfSpace(error) else { return }
            if case .append(_, let bytes) = job {
                // Kept within a bound, so a worker flooding a full disk cannot grow drover's memory.
                guard retainedAppendBytes + bytes.count <= Self.maxRetainedAppendBytes else {
                    failures.append(FileError(path: job.path, operation: "hold more for later (64 MiB already wait for room): dropped \(bytes.count) bytes of", code: error.code))
                    return
                }
                retainedAppendBytes += bytes.count
            }
            retained.append(job)
        }
        var appendOrder: [String] = []
        var appends: [String: [UInt8]] = [:]
        var replaceOrder: [String] = []
        var replaces: [String: @Sendable () -> [UInt8]] = [:]
        for job in retries + jobs {
            switch job {
            case .makeDirectory(let path):
                do { try FileSystem.makeDirectories(path) } catch { failed(error, retry: job) }
            case .append(let path, let bytes):
                if appends[path] == nil {
                    appendOrder.append(path)
                    appends[path] = bytes
                } else {
                    appends[path]!.append(contentsOf: bytes)
                }
            case .replace(let path, let content):
                if replaces[path] != nil { replaceOrder.removeAll { $0 == path } }
                replaceOrder.append(path)
                replaces[path] = content
            }
        }
        for path in appendOrder {
            do { try FileSystem.append(path, appends[path]!) } catch { failed(error, retry: .append(path: path, bytes: appends[path]!)) }
        }
        // Write every replacement under a temporary name, make them durable together, then
        // rename them in the order they were asked for. A few files are synced one by one;
        // past that one syncfs is cheaper (measured: under load, per-file fdatasync doubled
        // the completion latency, since every one of them waits for a journal commit).
        let syncEach = durable && replaceOrder.count < 4
        var written: [String] = []
        for path in replaceOrder {
            do {
                try FileSystem.writeFile(path + ".tmp", replaces[path]!(), sync: syncEach)
                written.append(path)
            } catch {
                unlink(path + ".tmp")  // no half-written file is left beside the old one
                failed(error, retry: .replace(path: path, content: replaces[path]!))
            }
        }
        if durable && !syncEach && !written.isEmpty {
            let fd = open(syncRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                _ = drover_syncfs(fd)
                close(fd)
            }
        }
        for path in written where rename(path + ".tmp", path) != 0 {
            let error = FileError(path: path, operation: "rename into", code: errno)
            unlink(path + ".tmp")
            failed(error, retry: .replace(path: path, content: replaces[path]!))
        }
        return failures
    }
}

extension FileWriter.Job {
    var path: String {
        switch self {
        case .makeDirectory(let path), .append(let path, _), .replace(let path, _): path
        }
    }
}

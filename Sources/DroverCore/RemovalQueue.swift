/// Removals (`clean`, `retention`) waiting to be handed to the writer thread, a bounded chunk
/// per batch: the writer removes a chunk in one round, and the next chunk is handed over only
/// once that round is done, so other tasks' writes (a launch's task.json) never wait behind
/// more than one chunk, however many folders a clean removes. Loop thread only.
struct RemovalQueue {
    /// About 40 ms of removals on a slow disk (0.5 ms a task folder, measured).
    static let chunkSize = 64

    /// Every path asked for, in order; `next` is the first not yet handed over.
    private var paths: [String] = []
    private var next = 0
    /// Paths asked for and not handed over yet (a path written to again leaves it).
    private var waiting: Set<String> = []
    /// The chunks the writer has (one, but for the last when closing): each one's batch, its
    /// paths, and where it ends in `paths`.
    private var inFlight: [(sequence: UInt64?, paths: [String], end: Int)] = []
    /// Everything before this index of `paths` has been tried.
    private var tried = 0
    private var waiters: [(through: Int, failures: [FileError], action: ([FileError]) -> Void)] = []

    /// Nothing waits to be handed over or for the writer.
    var isIdle: Bool { inFlight.isEmpty && next == paths.count && waiters.isEmpty }

    mutating func add(_ path: String) {
        guard waiting.insert(path).inserted else { return }
        paths.append(path)
    }

    /// A path that is written to again is not removed (nothing in drover reuses a removed
    /// task's id or session, but should it, the new files are kept).
    mutating func keep(_ path: String) {
        if !waiting.isEmpty { waiting.remove(path) }
    }

    /// Whether `path` is still to be removed by a chunk not yet handed over.
    func isWaiting(_ path: String) -> Bool { waiting.contains(path) }

    /// `action` gets, once every removal asked for so far has been tried, those that failed.
    /// False when none is outstanding (the caller runs it with the next batch instead).
    mutating func whenTried(_ action: @escaping ([FileError]) -> Void) -> Bool {
        guard tried < paths.count else { return false }
        waiters.append((paths.count, [], action))
        return true
    }

    /// The next chunk's paths (at most `limit`), when no chunk is with the writer (`all`: the
    /// rest, regardless, when the store closes). The caller submits them in a batch and says
    /// which with `handedOver`.
    mutating func takeChunk(limit: Int = chunkSize, all: Bool = false) -> [String]? {
        guard inFlight.isEmpty || all, next < paths.count else { return nil }
        let limit = all ? Int.max : limit
        var chunk: [String] = []
        var end = next
        while end < paths.count && chunk.count < limit {
            if waiting.remove(paths[end]) != nil { chunk.append(paths[end]) }
            end += 1
        }
        inFlight.append((nil, chunk, end))
        next = end
        return chunk
    }

    mutating func handedOver(in sequence: UInt64) {
        if !inFlight.isEmpty { inFlight[inFlight.count - 1].sequence = sequence }
    }

    /// The writer tried every batch through `attempted`, with these failures per batch
    /// range; returns the waiters now due, with the failures among the removals.
    mutating func progress(attempted: UInt64, failedBatches: [(ClosedRange<UInt64>, [FileError])]) -> [(([FileError]) -> Void, [FileError])] {
        var failures: [FileError] = []
        var done = 0
        for chunk in inFlight {
            guard let sequence = chunk.sequence, sequence <= attempted else { break }
            done += 1
            tried = chunk.end
            guard !chunk.paths.isEmpty else { continue }
            let removed = Set(chunk.paths)
            for (range, errors) in failedBatches where range.contains(sequence) {
                failures += errors.filter { removed.contains(Self.removedPath(of: $0.path, among: removed)) }
            }
        }
        guard done > 0 else { return [] }
        inFlight.removeFirst(done)
        var due: [(([FileError]) -> Void, [FileError])] = []
        var index = 0
        while index < waiters.count {
            waiters[index].failures += failures
            if waiters[index].through <= tried {
                due.append((waiters[index].action, waiters[index].failures))
                waiters.remove(at: index)
            } else {
                index += 1
            }
        }
        if tried == paths.count && inFlight.isEmpty {
            // All done: the bookkeeping starts afresh, so it does not grow across cleans.
            paths = []
            next = 0
            tried = 0
        }
        return due
    }

    /// The removed path a failure's path is, or lies under (a file inside a task's folder).
    private static func removedPath(of path: String, among removed: Set<String>) -> String {
        var candidate = Substring(path)
        while !removed.contains(String(candidate)), let slash = candidate.lastIndex(of: "/") {
            candidate = candidate[..<slash]
        }
        return String(candidate)
    }
}

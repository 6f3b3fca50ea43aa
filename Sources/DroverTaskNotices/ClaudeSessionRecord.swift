import DroverCore
import DroverWire
import Glibc

/// What the Claude Code hook remembers of one Claude session between its runs: how far it
/// has read the transcript, the drover tasks launched in the session whose end the model
/// has not been told, the ones it has (so each end is told once), and how often it kept the
/// session from stopping since the user's last prompt.
struct ClaudeSessionRecord: Equatable {
    var transcriptPath: String?
    var transcriptOffset = 0
    /// Launched in the session, end not told yet; in launch order.
    var open: [String] = []
    /// Ended and told (or not drover's to tell), newest last; bounded.
    var told: [String] = []
    var stopBlocks = 0
    var firstStopBlockMs: Int64?

    static let toldLimit = 2000

    init() {}

    /// A record read back; anything unreadable starts afresh (the worst outcome is an end
    /// told twice), never a failed hook.
    init(json: JSONObject) {
        let fields = FieldReader(lenient: json)
        transcriptPath = try? fields.string("transcript_path")
        transcriptOffset = (try? fields.count("transcript_offset")) ?? 0
        open = ((try? fields.strings("open", of: "task ids")) ?? nil ?? []).filter(TaskIdentifiers.isTaskID)
        told = ((try? fields.strings("told", of: "task ids")) ?? nil ?? []).filter(TaskIdentifiers.isTaskID)
        stopBlocks = (try? fields.count("stop_blocks")) ?? 0
        firstStopBlockMs = ((try? fields.count("first_stop_block_ms")) ?? nil).map(Int64.init)
    }

    func json() -> JSONObject {
        [
            "transcript_path": JSONValue(transcriptPath), "transcript_offset": JSONValue(transcriptOffset),
            "open": .array(open.map { .string($0) }), "told": .array(told.map { .string($0) }),
            "stop_blocks": JSONValue(stopBlocks), "first_stop_block_ms": firstStopBlockMs.map { .number(Double($0)) } ?? .null,
        ]
    }

    /// Takes in what the model saw in drover's answers: new launches, ends it was told.
    mutating func absorb(_ seen: DroverToolText) {
        markTold(seen.told)
        let toldSet = Set(told)
        for id in seen.launched where !toldSet.contains(id) && !open.contains(id) {
            open.append(id)
        }
    }

    mutating func markTold(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        let settled = Set(ids)
        open.removeAll { settled.contains($0) }
        for id in ids where !told.contains(id) { told.append(id) }
        if told.count > Self.toldLimit { told.removeFirst(told.count - Self.toldLimit) }
    }

    mutating func resetStopBlocks() {
        stopBlocks = 0
        firstStopBlockMs = nil
    }
}

/// A session's record file, `STATE/hooks/claude/NAME.json`, locked while one hook run reads
/// and rewrites it (Claude Code runs hooks of parallel tool calls at the same time).
final class ClaudeSessionStore {
    let path: String
    private let fd: Int32

    /// Records of sessions untouched for this long are removed when a new session begins.
    static let keepMs: Int64 = 30 * 24 * 3600 * 1000
    static let lockWaitMs = 3000

    static func folder(_ state: StateFolder) -> String { state.path + "/hooks/claude" }

    /// Opens (creating) and locks the record of `sessionID`.
    init(state: StateFolder, sessionID: String) throws(ClaudeHookError) {
        guard let name = Self.fileName(forSession: sessionID) else {
            throw ClaudeHookError("the session_id \"\(sessionID.prefix(40))\" has no letter or digit to name a file by")
        }
        let folder = Self.folder(state)
        do {
            try FileSystem.makeDirectories(folder)
        } catch {
            throw ClaudeHookError("\(error)")
        }
        path = folder + "/" + name + ".json"
        // O_NOFOLLOW: the name is ours, never a link planted to make the hook write elsewhere.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw ClaudeHookError("cannot open \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        var waitedMs = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, waitedMs < Self.lockWaitMs else {
                close(fd)
                throw ClaudeHookError("cannot lock \(path) (another hook run holds it)")
            }
            usleep(10_000)
            waitedMs += 10
        }
    }

    deinit { close(fd) }

    /// The record, or a new one (then stale records of other sessions are swept).
    func load() -> ClaudeSessionRecord {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0, info.st_size < 16 << 20 else {
            sweepStaleRecords()
            return ClaudeSessionRecord()
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count == bytes.count, let object = try? JSONParser.parse(bytes).value.objectValue else { return ClaudeSessionRecord() }
        return ClaudeSessionRecord(json: object)
    }

    func save(_ record: ClaudeSessionRecord) throws(ClaudeHookError) {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(record.json(), into: &bytes)
        bytes.append(0x0A)
        guard ftruncate(fd, 0) == 0 else { throw ClaudeHookError("cannot write \(path): \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + offset, $0.count - offset, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClaudeHookError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// A file name for a session id, made only of letters, digits, "-" and "_": the id itself
    /// when it is such (Claude's ids are UUIDs), else its safe characters and a hash of the
    /// whole id, so two ids never share a record. Nil when nothing safe is left.
    static func fileName(forSession id: String) -> String? {
        func isAlphanumeric(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) }
        var safe = ""
        for scalar in id.unicodeScalars where isAlphanumeric(scalar) || scalar == "-" || scalar == "_" {
            safe.unicodeScalars.append(scalar)
        }
        guard safe.unicodeScalars.contains(where: isAlphanumeric) else { return nil }
        if safe == id && safe.count <= 64 { return safe }
        return safe.prefix(40) + "-" + fnv1a(id)
    }

    private static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private func sweepStaleRecords() {
        let folder = FileSystem.dirname(of: path)
        let nowSeconds = Clock.wallMs() / 1000
        for name in FileSystem.list(folder) where name.hasSuffix(".json") && folder + "/" + name != path {
            var info = stat()
            let file = folder + "/" + name
            guard lstat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            if (nowSeconds - Int64(info.st_mtim.tv_sec)) * 1000 > Self.keepMs { unlink(file) }
        }
    }
}

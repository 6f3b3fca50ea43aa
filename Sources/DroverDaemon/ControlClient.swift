import CDroverSystem
import DroverCore
import DroverWire
import Glibc

/// Why a client could not get an answer: the message, and the exit status to use.
public struct ClientError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32
    /// Nothing listens on the socket (and none was to be started): what to say about it is
    /// the command's to add.
    public let noDaemon: Bool
    public var description: String { message }

    public init(message: String, exitCode: Int32, noDaemon: Bool = false) {
        self.message = message
        self.exitCode = exitCode
        self.noDaemon = noDaemon
    }
}

/// A blocking client of the daemon's socket: one request, then its answer frames. Plain
/// system calls, no event loop, so a `drover launch` in a shell loop stays cheap.
public final class ControlClient {
    private let fd: Int32
    private var decoder = FrameDecoder(maxFrameBytes: 1 << 30)
    private var buffer = [UInt8](repeating: 0, count: 65536)

    private init(fd: Int32) {
        self.fd = fd
    }

    deinit { close(fd) }

    /// Connects to the folder's daemon, starting one (`drover serve` in the background,
    /// logging to daemon.log) when none answers and `autostart` allows it.
    /// `beforeStarting` runs before a daemon is started, to refuse at once what would make it
    /// fail (a config that does not load).
    public static func connect(state: StateFolder, autostart: Bool, serveArguments: [String] = [],
                               beforeStarting: () throws(ClientError) -> Void = {}) throws(ClientError) -> ControlClient {
        let first = drover_connect_unix(state.socket)
        if first >= 0 { return try verified(first, state) }
        let reason = errno
        guard reason == ENOENT || reason == ECONNREFUSED else {
            throw ClientError(message: "cannot reach the drover daemon at \(state.socket): \(String(cString: strerror(reason)))", exitCode: 5)
        }
        guard autostart else {
            throw ClientError(message: "no drover daemon answers at \(state.socket)", exitCode: 5, noDaemon: true)
        }
        try beforeStarting()
        try startDaemon(state: state, extraArguments: serveArguments)
        // Wait for it to listen: up to 5 s, checking often at first.
        var delayUs: UInt32 = 2000
        var waitedUs: UInt32 = 0
        while waitedUs < 5_000_000 {
            let fd = drover_connect_unix(state.socket)
            if fd >= 0 { return try verified(fd, state) }
            usleep(delayUs)
            waitedUs += delayUs
            delayUs = min(delayUs * 2, 100_000)
        }
        let log = (try? FileSystem.read(state.log)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let last = log.split(separator: "\n").suffix(3).joined(separator: "\n")
        throw ClientError(message: "cannot start the drover daemon for \(state.path)\(last.isEmpty ? "" : ":\n" + last)", exitCode: 5)
    }

    /// Only a daemon of this user is spoken to: a socket another user planted could ask for
    /// prompts and answer with lies.
    private static func verified(_ fd: Int32, _ state: StateFolder) throws(ClientError) -> ControlClient {
        var uid: uid_t = 0
        guard drover_peer_uid(fd, &uid) == 0, uid == geteuid() else {
            close(fd)
            throw ClientError(message: "refusing the daemon at \(state.socket): it runs as \(FolderPermissions.userName(uid)), not as this user", exitCode: 5)
        }
        return ControlClient(fd: fd)
    }

    private static func startDaemon(state: StateFolder, extraArguments: [String]) throws(ClientError) {
        // A folder the daemon would refuse is refused here, at once and with its reason (exit 2).
        do {
            try FolderPermissions.check(path: state.path)
        } catch {
            throw ClientError(message: error.description, exitCode: 2)
        }
        do {
            try FileSystem.makeDirectories(state.path)
        } catch {
            throw ClientError(message: error.description, exitCode: 5)
        }
        // The drover beside this program: drover itself, or the one drover-mcp is installed with.
        let program = FileSystem.executableDirectory() + "/drover"
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let log = open(state.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer {
            close(devNull)
            close(log)
        }
        guard devNull >= 0, log >= 0 else { throw ClientError(message: "cannot open \(state.log): \(String(cString: strerror(errno)))", exitCode: 5) }
        let argv = ["drover", "serve", "--state-dir", state.path] + extraArguments
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = drover_spawn(&pid, program, cArgs, environ, nil, devNull, log, log)
        guard rc == 0 else { throw ClientError(message: "cannot start \(program) serve: \(String(cString: strerror(rc)))", exitCode: 5) }
    }

    /// Why sending stopped early: the daemon closed the connection while the request was
    /// still going out (it refused it, as too large say); its answer may be waiting.
    private var sendFailure: Int32?

    // MARK: typed requests

    /// Sends a request and reads its single answer; an error answer becomes a ClientError
    /// with the daemon's code as its exit status.
    public func call<Call: ControlCall>(_ call: Call) throws(ClientError) -> Call.Reply {
        try send(call)
        guard let reply = try next(answering: Call.self) else {
            throw ClientError(message: "the daemon closed the connection without an answer", exitCode: 5)
        }
        return reply
    }

    public func send<Call: ControlCall>(_ call: Call) throws(ClientError) {
        try send(call.json())
    }

    /// The next frame answering `call`; nil when the daemon has closed the connection.
    public func next<Call: ControlCall>(answering call: Call.Type) throws(ClientError) -> Call.Reply? {
        guard let frame = try next() else { return nil }
        try Self.check(frame)
        do {
            return try Call.Reply(frame: frame)
        } catch {
            throw ClientError(message: "bad answer from the daemon to \(Call.type): \(error.message)", exitCode: 5)
        }
    }

    // MARK: frames

    /// Sends one frame. A daemon that closes the connection meanwhile ends the sending
    /// quietly: `next()` then reads the answer it left (or says the connection was lost).
    public func send(_ frame: JSONObject) throws(ClientError) {
        let bytes = FrameEncoder.encode(frame)
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a closed connection is an error to handle, not a SIGPIPE.
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET {
                    sendFailure = errno
                    return
                }
                throw ClientError(message: "lost the connection to the daemon: \(String(cString: strerror(errno)))", exitCode: 5)
            }
            offset += n
        }
    }

    /// The next answer frame; nil when the daemon has closed the connection.
    public func next() throws(ClientError) -> JSONObject? {
        while true {
            do {
                if let frame = try decoder.next() { return frame.object }
            } catch {
                throw ClientError(message: "bad answer from the daemon: \(error)", exitCode: 5)
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError(message: "lost the connection to the daemon: \(String(cString: strerror(sendFailure ?? errno)))", exitCode: 5)
            }
            if n == 0 {
                if let sendFailure { throw ClientError(message: "lost the connection to the daemon: \(String(cString: strerror(sendFailure)))", exitCode: 5) }
                return nil
            }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    // MARK: several connections at once

    /// The socket, for a client that waits on several connections and its terminal at once
    /// with poll(2) (`drover top`).
    public var descriptor: Int32 { fd }

    /// What has arrived, for a caller that polls `descriptor`: one read(2) (which does not
    /// block once poll(2) said the socket is readable), then the answers it completes, each
    /// checked as `next(answering:)` does. `closed` once the daemon has hung up.
    public func receiveAvailable<Call: ControlCall>(answering call: Call.Type) throws(ClientError) -> (replies: [Call.Reply], closed: Bool) {
        var closed = false
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno != EINTR && errno != EAGAIN {
            throw ClientError(message: "lost the connection to the daemon: \(String(cString: strerror(errno)))", exitCode: 5)
        }
        if n == 0 { closed = true }
        if n > 0 { buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
        var replies: [Call.Reply] = []
        while true {
            let frame: JSONObject
            do {
                guard let next = try decoder.next() else { break }
                frame = next.object
            } catch {
                throw ClientError(message: "bad answer from the daemon: \(error)", exitCode: 5)
            }
            try Self.check(frame)
            do {
                replies.append(try Call.Reply(frame: frame))
            } catch {
                throw ClientError(message: "bad answer from the daemon to \(Call.type): \(error.message)", exitCode: 5)
            }
        }
        return (replies, closed)
    }

    /// Sends a request frame and returns its single answer, turning an "error" answer into
    /// a ClientError with the daemon's exit status. For tools that build frames by hand.
    public func call(_ request: JSONObject) throws(ClientError) -> JSONObject {
        try send(request)
        guard let answer = try next() else { throw ClientError(message: "the daemon closed the connection without an answer", exitCode: 5) }
        try Self.check(answer)
        return answer
    }

    public static func check(_ answer: JSONObject) throws(ClientError) {
        guard answer["type"]?.stringValue == "error" else { return }
        let error = (try? ErrorReply(frame: answer)) ?? ErrorReply(code: 1, message: "the daemon refused the request")
        throw ClientError(message: error.message, exitCode: Int32(clamping: error.code))
    }
}

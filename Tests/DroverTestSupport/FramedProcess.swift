import CDroverSystem
import DroverCore
import DroverWire
import Glibc

/// A worker run directly, without drover: the test plays drover's side of the pipes, sending
/// frames to its stdin and reading frames from its stdout, with a bound on every wait. Its
/// stderr goes to a file. The child is killed and reaped on deinit if it is still running.
public final class FramedProcess {
    public let pid: pid_t
    private var input: Int32
    private let output: Int32
    private var decoder = FrameDecoder()
    private var exitStatus: Int32?
    /// The signal that ended it, once `waitForExit` saw it end by one.
    public private(set) var terminatingSignal: Int32?

    public init(_ command: [String], stderr: String) throws {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard drover_pipe(&toChild) == 0 else { throw FileError(path: "pipe", operation: "create", code: errno) }
        guard drover_pipe(&fromChild) == 0 else {
            toChild.forEach { close($0) }
            throw FileError(path: "pipe", operation: "create", code: errno)
        }
        let pid: pid_t
        do {
            pid = try spawnChild(command, input: toChild[0], output: .descriptor(fromChild[1]), stderr: stderr)
        } catch {
            (toChild + fromChild).forEach { close($0) }
            throw error
        }
        close(toChild[0])
        close(fromChild[1])
        self.pid = pid
        input = toChild[1]
        output = fromChild[0]
    }

    deinit {
        closeInput()
        close(output)
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = DroverTestSupport.waitForExit(pid)
        }
    }

    public func send(_ frame: JSONObject) throws {
        let bytes = FrameEncoder.encode(frame)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(input, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileError(path: "stdin of \(pid)", operation: "write", code: errno) }
            offset += n
        }
    }

    /// The next frame; nil at the end of its stdout or after `timeoutMs`. A frame that does not
    /// decode is an error.
    public func next(timeoutMs: Int) throws -> JSONObject? {
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        while true {
            if let frame = try decoder.next() { return frame.object }
            let left = deadline - Clock.wallMs()
            guard left > 0 else { return nil }
            var poller = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(left))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    /// Every frame until its stdout ends (at most `timeoutMs` in all).
    public func rest(timeoutMs: Int) throws -> [JSONObject] {
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        var frames: [JSONObject] = []
        while let frame = try next(timeoutMs: Int(max(1, deadline - Clock.wallMs()))) { frames.append(frame) }
        return frames
    }

    public func closeInput() {
        if input >= 0 {
            close(input)
            input = -1
        }
    }

    /// Its exit status once it has exited within `timeoutMs`; nil (still running) otherwise.
    public func waitForExit(timeoutMs: Int) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        repeat {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                if (status & 0x7F) != 0 { terminatingSignal = status & 0x7F }
                return exitStatus
            }
            usleep(5000)
        } while Clock.wallMs() < deadline
        return nil
    }
}

import CDroverSystem
import DroverCore
import Glibc

/// A child with pipes on its stdin and stdout (stderr to a file), read line by line with a
/// bound on every wait: for driving line protocols such as MCP over stdio.
public final class PipedProcess {
    public let pid: pid_t
    private var input: Int32
    private let output: Int32
    private var pending: [UInt8] = []
    private var exitStatus: Int32?

    public init(_ command: [String], stderr: String) throws {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard drover_pipe(&toChild) == 0, drover_pipe(&fromChild) == 0 else {
            throw FileError(path: "pipe", operation: "create", code: errno)
        }
        let pid: pid_t
        do {
            pid = try spawnChild(command, input: toChild[0], output: .descriptor(fromChild[1]), stderr: stderr)
        } catch {
            toChild.forEach { close($0) }
            fromChild.forEach { close($0) }
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

    public func writeLine(_ text: String) throws {
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(input, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileError(path: "stdin of \(pid)", operation: "write", code: errno) }
            offset += n
        }
    }

    /// The next line, or nil at end of output or after `timeoutMs`.
    public func readLine(timeoutMs: Int) -> String? {
        let deadline = Clock.wallMs() + Int64(timeoutMs)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
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
            pending.append(contentsOf: buffer[0..<n])
        }
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
                exitStatus = (status >> 8) & 0xFF
                return exitStatus
            }
            usleep(5000)
        } while Clock.wallMs() < deadline
        return nil
    }
}

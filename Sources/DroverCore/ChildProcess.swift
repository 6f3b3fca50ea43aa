import CLibUV
import Glibc

/// What to start: a plain value built before anything runs.
public struct SpawnSpec: Sendable {
    /// Absolute or relative path of the program (already looked up).
    public var executable: String
    /// argv, including argv[0].
    public var arguments: [String]
    /// "NAME=value" entries: the child's whole environment.
    public var environment: [String]
    public var workingDirectory: String?

    public init(executable: String, arguments: [String], environment: [String], workingDirectory: String? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// A program that could not be started, with the errno libuv reported.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public let command: String
    public let code: Int32
    public var description: String { "cannot start \(command): \(EventLoop.describe(code))" }
}

/// One child process in its own process group, with pipes for stdin (frames in), stdout
/// (frames out) and stderr (free text). It owns its four handles and keeps itself alive
/// until libuv has closed all of them; `onClosed` is the last thing it reports.
final class ChildProcess {
    private let process: UnsafeMutablePointer<uv_process_t>
    private let stdinPipe: UnsafeMutablePointer<uv_pipe_t>
    private let stdoutPipe: UnsafeMutablePointer<uv_pipe_t>
    private let stderrPipe: UnsafeMutablePointer<uv_pipe_t>
    private var openHandles = 4
    private var selfReference: Unmanaged<ChildProcess>?

    private(set) var pid: Int32 = 0
    private(set) var exited = false
    private var stdinOpen = true
    private var closeStdinWhenFlushed = false
    private var pendingWrites = 0

    var onStdout: (UnsafeRawBufferPointer) -> Void = { _ in }
    var onStdoutEnd: () -> Void = {}
    var onStderr: (UnsafeRawBufferPointer) -> Void = { _ in }
    var onExit: (_ status: Int64, _ signal: Int32) -> Void = { _, _ in }
    var onClosed: () -> Void = {}

    private init(loop: EventLoop) {
        process = allocateHandle(uv_process_t.self)
        stdinPipe = allocateHandle(uv_pipe_t.self)
        stdoutPipe = allocateHandle(uv_pipe_t.self)
        stderrPipe = allocateHandle(uv_pipe_t.self)
        uv_pipe_init(loop.raw, stdinPipe, 0)
        uv_pipe_init(loop.raw, stdoutPipe, 0)
        uv_pipe_init(loop.raw, stderrPipe, 0)
        let me = Unmanaged.passUnretained(self).toOpaque()
        process.pointee.data = me
        stdinPipe.pointee.data = me
        stdoutPipe.pointee.data = me
        stderrPipe.pointee.data = me
    }

    /// Starts the child. On failure every handle is still closed (asynchronously) and the
    /// error names the program and errno.
    static func spawn(loop: EventLoop, spec: SpawnSpec) throws(SpawnError) -> ChildProcess {
        let child = ChildProcess(loop: loop)
        child.selfReference = Unmanaged.passRetained(child)
        let rc = child.start(loop: loop, spec: spec)
        if rc != 0 {
            child.exited = true
            child.stdinOpen = false
            child.closeAll()
            throw SpawnError(command: spec.executable, code: rc)
        }
        child.pid = child.process.pointee.pid
        uv_read_start(asStream(child.stdoutPipe), childAlloc, childRead)
        uv_read_start(asStream(child.stderrPipe), childAlloc, childRead)
        return child
    }

    private func start(loop: EventLoop, spec: SpawnSpec) -> Int32 {
        let argv = CStringArray(spec.arguments)
        let envp = CStringArray(spec.environment)
        defer {
            argv.free()
            envp.free()
        }
        var stdio = [uv_stdio_container_t](repeating: uv_stdio_container_t(), count: 3)
        stdio[0].flags = uv_stdio_flags(UV_CREATE_PIPE.rawValue | UV_READABLE_PIPE.rawValue)
        stdio[0].data.stream = asStream(stdinPipe)
        stdio[1].flags = uv_stdio_flags(UV_CREATE_PIPE.rawValue | UV_WRITABLE_PIPE.rawValue)
        stdio[1].data.stream = asStream(stdoutPipe)
        stdio[2].flags = uv_stdio_flags(UV_CREATE_PIPE.rawValue | UV_WRITABLE_PIPE.rawValue)
        stdio[2].data.stream = asStream(stderrPipe)
        return spec.executable.withCString { file in
            withOptionalCString(spec.workingDirectory) { cwd in
                stdio.withUnsafeMutableBufferPointer { stdioBuffer in
                    var options = uv_process_options_t()
                    options.file = file
                    options.args = argv.pointer
                    options.env = envp.pointer
                    options.cwd = cwd
                    // Own session and process group: kill(-pid) reaches every descendant
                    // that stays in the group.
                    options.flags = UInt32(UV_PROCESS_DETACHED.rawValue)
                    options.stdio_count = 3
                    options.stdio = stdioBuffer.baseAddress
                    options.exit_cb = childExited
                    return uv_spawn(loop.raw, process, &options)
                }
            }
        }
    }

    /// Queues bytes for the child's stdin. The bytes live with the write request until
    /// libuv's callback, as uv_write requires.
    func write(_ bytes: [UInt8]) {
        guard stdinOpen, !closeStdinWhenFlushed, !bytes.isEmpty else { return }
        let requestSize = MemoryLayout<uv_write_t>.stride
        let memory = UnsafeMutableRawPointer.allocate(byteCount: requestSize + bytes.count, alignment: 16)
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = memory + requestSize
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, asStream(stdinPipe), &buffer, 1) { request, _ in
            let child = Unmanaged<ChildProcess>.fromOpaque(request!.pointee.handle.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(request!).deallocate()
            child.writeFinished()
        }
        if rc != 0 {
            memory.deallocate()
        } else {
            pendingWrites += 1
        }
    }

    private func writeFinished() {
        pendingWrites -= 1
        if pendingWrites == 0 && closeStdinWhenFlushed { closeStdin() }
    }

    /// Closes stdin once everything queued has been written (the child then sees EOF).
    func closeStdinAfterWrites() {
        if pendingWrites == 0 {
            closeStdin()
        } else {
            closeStdinWhenFlushed = true
        }
    }

    /// Closes stdin now; queued writes are dropped.
    func closeStdin() {
        guard stdinOpen else { return }
        stdinOpen = false
        close(stdinPipe)
    }

    /// Sends a signal to the child's whole process group.
    @discardableResult
    func signalGroup(_ signal: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(-pid, signal) == 0
    }

    /// Stops waiting for EOF on stdout and stderr (a descendant that left the process group
    /// may hold them open for ever).
    func abandonOutputs() {
        close(stdoutPipe)
        close(stderrPipe)
    }

    fileprivate func exitedWith(status: Int64, signal: Int32) {
        exited = true
        // Sweep the group now, while its id cannot have been reused: anything the worker
        // left behind in it dies with it.
        signalGroup(SIGKILL)
        close(process)
        closeStdin()
        onExit(status, signal)
    }

    fileprivate func read(from stream: UnsafeMutablePointer<uv_stream_t>, count: Int, buffer: UnsafeRawPointer?) {
        let isStdout = stream == asStream(stdoutPipe)
        if count > 0, let buffer {
            let bytes = UnsafeRawBufferPointer(start: buffer, count: count)
            if isStdout { onStdout(bytes) } else { onStderr(bytes) }
        } else if count < 0 {
            // EOF or a read error: either way this stream is done.
            if isStdout {
                close(stdoutPipe)
                onStdoutEnd()
            } else {
                close(stderrPipe)
            }
        }
    }

    private func closeAll() {
        close(process)
        close(stdinPipe)
        close(stdoutPipe)
        close(stderrPipe)
    }

    private func close<T>(_ pointer: UnsafeMutablePointer<T>) {
        let handle = asHandle(pointer)
        guard uv_is_closing(handle) == 0 else { return }
        uv_close(handle) { handle in
            let child = Unmanaged<ChildProcess>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            child.handleClosed()
        }
    }

    private func handleClosed() {
        openHandles -= 1
        guard openHandles == 0 else { return }
        onClosed()
        onStdout = { _ in }
        onStderr = { _ in }
        onStdoutEnd = {}
        onExit = { _, _ in }
        onClosed = {}
        process.deallocate()
        stdinPipe.deallocate()
        stdoutPipe.deallocate()
        stderrPipe.deallocate()
        selfReference?.release()
        selfReference = nil
    }

    var isStdinOpen: Bool { stdinOpen }
}

private func childExited(_ process: UnsafeMutablePointer<uv_process_t>?, _ status: Int64, _ signal: Int32) {
    let child = Unmanaged<ChildProcess>.fromOpaque(process!.pointee.data).takeUnretainedValue()
    child.exitedWith(status: status, signal: signal)
}

private func childAlloc(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    let loop = EventLoop.from(handle!.pointee.loop)
    buffer!.pointee = uv_buf_init(loop.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(EventLoop.readBufferSize))
}

private func childRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    let child = Unmanaged<ChildProcess>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
    child.read(from: stream!, count: count, buffer: buffer.flatMap { UnsafeRawPointer($0.pointee.base) })
}

/// A NULL-terminated C array of strings, for argv and envp.
struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointer = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() { pointer[i] = strdup(s) }
        pointer[strings.count] = nil
    }

    func free() {
        for i in 0..<count { Glibc.free(pointer[i]) }
        pointer.deallocate()
    }
}

func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    if let string { return string.withCString { body($0) } }
    return body(nil)
}

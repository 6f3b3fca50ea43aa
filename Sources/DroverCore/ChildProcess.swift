import CDroverSystem
import CLibUV
import Glibc
import Synchronization

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
/// (frames out) and stderr (free text). It owns its three pipe handles and keeps itself
/// alive until the child is reaped and libuv has closed the pipes; `onClosed` is the last
/// thing it reports. Public so that workers which run a program of their own (the agent CLI
/// adapters) spawn and stop it exactly as the supervisor does.
public final class ChildProcess {
    private let stdinPipe: UnsafeMutablePointer<uv_pipe_t>
    private let stdoutPipe: UnsafeMutablePointer<uv_pipe_t>
    private let stderrPipe: UnsafeMutablePointer<uv_pipe_t>
    private var openHandles = 3
    private var selfReference: Unmanaged<ChildProcess>?

    public private(set) var pid: Int32 = 0
    public private(set) var exited = false
    private var stdinOpen = true
    private var stdoutPaused = false
    private var closeStdinWhenFlushed = false
    private var pendingWrites = 0
    /// Bytes queued for stdin that the child has not read yet.
    public private(set) var pendingWriteBytes = 0

    public var onStdout: (UnsafeRawBufferPointer) -> Void = { _ in }
    public var onStdoutEnd: () -> Void = {}
    public var onStderr: (UnsafeRawBufferPointer) -> Void = { _ in }
    public var onExit: (_ status: Int64, _ signal: Int32) -> Void = { _, _ in }
    /// Peak resident memory in KiB, known once the child is reaped, when it exceeds the
    /// supervisor's own peak. The kernel counts, in a child's ru_maxrss, the memory of the
    /// process that exec replaced, and a vfork-style spawn shares the supervisor's memory
    /// until exec: a smaller peak cannot be told apart from the supervisor's size.
    public fileprivate(set) var peakMemoryKiB: Int?
    public var onClosed: () -> Void = {}

    /// The first libuv error met while taking over the pipes (0: none).
    private var setupError: Int32 = 0

    private init(loop: EventLoop, stdinFD: Int32, stdoutFD: Int32, stderrFD: Int32) {
        stdinPipe = allocateHandle(uv_pipe_t.self)
        stdoutPipe = allocateHandle(uv_pipe_t.self)
        stderrPipe = allocateHandle(uv_pipe_t.self)
        for (pipe, fd) in [(stdinPipe, stdinFD), (stdoutPipe, stdoutFD), (stderrPipe, stderrFD)] {
            uv_pipe_init(loop.raw, pipe, 0)
            let rc = uv_pipe_open(pipe, fd)
            if rc != 0 {
                if setupError == 0 { setupError = rc }
                Glibc.close(fd)  // libuv did not take it
            }
            pipe.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        }
    }

    /// Starts the child with posix_spawn (vfork semantics: the supervisor's page tables are
    /// not copied, which is what keeps spawning at the kernel's exec rate).
    public static func spawn(loop: EventLoop, spec: SpawnSpec) throws(SpawnError) -> ChildProcess {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        guard drover_pipe(&input) == 0 else { throw SpawnError(command: spec.executable, code: -errno) }
        guard drover_pipe(&output) == 0 else {
            let code = errno
            [input[0], input[1]].forEach { _ = Glibc.close($0) }
            throw SpawnError(command: spec.executable, code: -code)
        }
        guard drover_pipe(&errors) == 0 else {
            let code = errno
            [input[0], input[1], output[0], output[1]].forEach { _ = Glibc.close($0) }
            throw SpawnError(command: spec.executable, code: -code)
        }
        let reaper = loop.reaper
        let argv = CStringArray(spec.arguments)
        let envp = CStringArray(spec.environment)
        var pid: pid_t = 0
        let rc = spec.executable.withCString { path in
            withOptionalCString(spec.workingDirectory) { cwd in
                drover_spawn(&pid, path, argv.pointer, envp.pointer, cwd, input[0], output[1], errors[1])
            }
        }
        argv.free()
        envp.free()
        // The child's ends belong to the child now.
        [input[0], output[1], errors[1]].forEach { _ = Glibc.close($0) }
        if rc != 0 {
            [input[1], output[0], errors[0]].forEach { _ = Glibc.close($0) }
            throw SpawnError(command: spec.executable, code: -rc)
        }
        let child = ChildProcess(loop: loop, stdinFD: input[1], stdoutFD: output[0], stderrFD: errors[0])
        child.pid = pid
        OrphanSweeper.spawned(pid)
        SupervisorWarden.groupStarted(pid)
        child.selfReference = Unmanaged.passRetained(child)
        reaper.watch(child)
        if child.setupError == 0 { child.setupError = uv_read_start(asStream(child.stdoutPipe), childAlloc, childRead) }
        if child.setupError == 0 { child.setupError = uv_read_start(asStream(child.stderrPipe), childAlloc, childRead) }
        if child.setupError != 0 {
            // It runs, but drover cannot hear it: end it. The reaper keeps it until it is reaped.
            kill(-pid, SIGKILL)
            child.closeStdin()
            child.abandonOutputs()
            throw SpawnError(command: spec.executable, code: child.setupError)
        }
        return child
    }

    /// Stops reading stdout (the worker blocks once the pipe is full) until `resumeStdout`.
    public func pauseStdout() {
        guard !stdoutPaused, uv_is_closing(asHandle(stdoutPipe)) == 0 else { return }
        uv_read_stop(asStream(stdoutPipe))
        stdoutPaused = true
    }

    public func resumeStdout() {
        guard stdoutPaused else { return }
        stdoutPaused = false
        guard uv_is_closing(asHandle(stdoutPipe)) == 0 else { return }
        if uv_read_start(asStream(stdoutPipe), childAlloc, childRead) != 0 {
            close(stdoutPipe)
            onStdoutEnd()
        }
    }

    /// Queues bytes for the child's stdin. The bytes live with the write request until
    /// libuv's callback, as uv_write requires.
    public func write(_ bytes: [UInt8]) {
        guard stdinOpen, !closeStdinWhenFlushed, !bytes.isEmpty else { return }
        // One allocation: the request, the payload's size (libuv clears `bufs` before the
        // callback), then the payload.
        let requestSize = (MemoryLayout<uv_write_t>.stride + 15) & ~15
        let memory = UnsafeMutableRawPointer.allocate(byteCount: requestSize + 16 + bytes.count, alignment: 16)
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        (memory + requestSize).storeBytes(of: bytes.count, as: Int.self)
        let payload = memory + requestSize + 16
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, asStream(stdinPipe), &buffer, 1) { request, _ in
            let child = Unmanaged<ChildProcess>.fromOpaque(request!.pointee.handle.pointee.data).takeUnretainedValue()
            let memory = UnsafeMutableRawPointer(request!)
            let size = (memory + ((MemoryLayout<uv_write_t>.stride + 15) & ~15)).load(as: Int.self)
            memory.deallocate()
            child.writeFinished(bytes: size)
        }
        if rc != 0 {
            memory.deallocate()
        } else {
            pendingWrites += 1
            pendingWriteBytes += bytes.count
        }
    }

    private func writeFinished(bytes: Int) {
        pendingWrites -= 1
        pendingWriteBytes -= bytes
        if pendingWrites == 0 && closeStdinWhenFlushed { closeStdin() }
    }

    /// Closes stdin once everything queued has been written (the child then sees EOF).
    public func closeStdinAfterWrites() {
        if pendingWrites == 0 {
            closeStdin()
        } else {
            closeStdinWhenFlushed = true
        }
    }

    /// Closes stdin now; queued writes are dropped.
    public func closeStdin() {
        guard stdinOpen else { return }
        stdinOpen = false
        close(stdinPipe)
    }

    /// Sends a signal to the child's whole process group (never after it has been reaped).
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        guard pid > 0, !exited else { return false }
        return kill(-pid, signal) == 0
    }

    /// Stops waiting for EOF on stdout and stderr (a descendant that left the process group
    /// may hold them open for ever).
    public func abandonOutputs() {
        close(stdoutPipe)
        close(stderrPipe)
    }

    /// Called by the reaper once the child is reaped (its group already swept).
    fileprivate func reaped(status: Int64, signal: Int32) {
        exited = true
        closeStdin()
        onExit(status, signal)
        finishIfDone()
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
        finishIfDone()
    }

    private func finishIfDone() {
        guard openHandles == 0, exited, selfReference != nil else { return }
        onClosed()
        onStdout = { _ in }
        onStderr = { _ in }
        onStdoutEnd = {}
        onExit = { _, _ in }
        onClosed = {}
        stdinPipe.deallocate()
        stdoutPipe.deallocate()
        stderrPipe.deallocate()
        selfReference?.release()
        selfReference = nil
    }

    public var isStdinOpen: Bool { stdinOpen }
}

/// Reaps this loop's children when SIGCHLD arrives. Each loop waits only for its own pids,
/// so several loops in one process (the tests) never take each other's exits. A child's
/// process group is killed while the child is still a zombie, before it is reaped: the
/// group id cannot have been reused then, and nothing the worker left in its group lives on.
final class ChildReaper {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private var children: [Int32: ChildProcess] = [:]
    /// Orphan sweeps are coalesced: at most one per few milliseconds, however many
    /// children end meanwhile (a sweep per exit cost a fifth of the spawn throughput).
    private let orphanTimer: LoopTimer

    init(loop: EventLoop) {
        orphanTimer = LoopTimer(loop: loop)
        orphanTimer.unref()
        handle = allocateHandle(uv_signal_t.self)
        uv_signal_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_signal_start(handle, { handle, _ in
            Unmanaged<ChildReaper>.fromOpaque(handle!.pointee.data).takeUnretainedValue().sweep()
        }, SIGCHLD)
        uv_unref(asHandle(handle))
    }

    func watch(_ child: ChildProcess) {
        children[child.pid] = child
        // A running child keeps the loop alive even if it has closed its pipes.
        if children.count == 1 { uv_ref(asHandle(handle)) }
    }

    func sweep() {
        var ended: [(ChildProcess, Int64, Int32)] = []
        for (pid, child) in children where drover_has_exited(pid) != 0 {
            kill(-pid, SIGKILL)
            var code: Int32 = 0
            var signal: Int32 = 0
            var peak = 0
            if drover_reap(pid, &code, &signal, &peak) != 0 {
                child.peakMemoryKiB = peak > ownPeakMemoryKiB() ? peak : nil
                ended.append((child, Int64(code), signal))
            }
        }
        for (child, _, _) in ended {
            children[child.pid] = nil
            OrphanSweeper.reaped(child.pid)
            SupervisorWarden.groupEnded(child.pid)
        }
        if children.isEmpty { uv_unref(asHandle(handle)) }
        for (child, code, signal) in ended { child.reaped(status: code, signal: signal) }
        if OrphanSweeper.isEnabled && !orphanTimer.isActive {
            orphanTimer.start(after: 5) { OrphanSweeper.sweep() }
        }
    }

    func close() {
        orphanTimer.stop()
        closeAndFree(handle)
    }
}

/// This process's own peak resident memory in KiB.
private func ownPeakMemoryKiB() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss
}

private func childAlloc(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    let loop = EventLoop.from(handle!.pointee.loop)
    buffer!.pointee = uv_buf_init(loop.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(EventLoop.readBufferSize))
}

private func childRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    let child = Unmanaged<ChildProcess>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
    child.read(from: stream!, count: count, buffer: buffer.flatMap { UnsafeRawPointer($0.pointee.base) })
}

/// Descendants that escaped their task's process group (a grandchild that called setsid)
/// are re-parented to a supervisor that is a child subreaper. Once `enable()` has made this
/// process one, every SIGCHLD and every task's end sweeps: children that no loop spawned are
/// orphans of ended tasks, and are killed and reaped. Off by default, so a process hosting
/// other children of its own (a test runner) never has them touched.
public enum OrphanSweeper {
    private static let state = OrphanState()

    /// Becomes a child subreaper and starts sweeping. False if the kernel refused.
    @discardableResult
    public static func enable() -> Bool {
        guard drover_become_subreaper() == 0 else { return false }
        state.enabled = true
        return true
    }

    static var isEnabled: Bool { state.enabled }

    static func spawned(_ pid: Int32) { state.insert(pid) }
    static func reaped(_ pid: Int32) { state.remove(pid) }

    /// Kills live orphans and reaps dead ones.
    static func sweep() {
        guard state.enabled else { return }
        // The kernel lists each thread's children; orphans land on one of our threads.
        for thread in FileSystem.list("/proc/self/task") {
            let listing = String(decoding: (try? FileSystem.read("/proc/self/task/\(thread)/children")) ?? [], as: UTF8.self)
            for pid in listing.split(separator: " ").compactMap({ Int32($0) }) where !state.contains(pid) {
                kill(pid, SIGKILL)
            }
        }
        // Reap every ended child that no loop is waiting for.
        while true {
            let pid = drover_peek_exited_child()
            guard pid > 0, !state.contains(pid) else { break }
            var code: Int32 = 0
            var signal: Int32 = 0
            var peak = 0
            _ = drover_reap(pid, &code, &signal, &peak)
        }
    }
}

/// The pids spawned by any loop of this process, shared across threads.
private final class OrphanState: Sendable {
    private struct State {
        var pids: Set<Int32> = []
        var enabled = false
    }
    private let state = Mutex(State())

    var enabled: Bool {
        get { state.withLock { $0.enabled } }
        set { state.withLock { $0.enabled = newValue } }
    }

    func insert(_ pid: Int32) { state.withLock { _ = $0.pids.insert(pid) } }
    func remove(_ pid: Int32) { state.withLock { _ = $0.pids.remove(pid) } }
    func contains(_ pid: Int32) -> Bool { state.withLock { $0.pids.contains(pid) } }
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

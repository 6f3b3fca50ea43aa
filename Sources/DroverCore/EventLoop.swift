import CLibUV
import Glibc

/// One libuv loop and the state every handle on it shares. Everything that touches a loop's
/// handles runs on the thread that runs the loop; other threads reach it only through
/// `LoopWakeup`.
public final class EventLoop {
    public let raw: UnsafeMutablePointer<uv_loop_t>
    /// Shared by every read on this loop: reads are consumed synchronously in their callback.
    let readBuffer: UnsafeMutableRawPointer
    static let readBufferSize = 64 * 1024
    private var reaperIfStarted: ChildReaper?
    /// The thread that made the loop, which alone may touch its handles.
    private let ownerThread = pthread_self()

    /// Watches SIGCHLD for this loop's children; started before the first spawn.
    var reaper: ChildReaper {
        if let reaperIfStarted { return reaperIfStarted }
        let reaper = ChildReaper(loop: self)
        reaperIfStarted = reaper
        return reaper
    }

    public init() {
        raw = .allocate(capacity: 1)
        let rc = uv_loop_init(raw)
        precondition(rc == 0, "uv_loop_init failed: \(EventLoop.describe(rc))")
        readBuffer = .allocate(byteCount: EventLoop.readBufferSize, alignment: 16)
        raw.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        reaperIfStarted?.close()
        // Let pending close callbacks run so every handle's memory is freed.
        uv_run(raw, UV_RUN_NOWAIT)
        if uv_loop_close(raw) != 0 {
            // Something is still open (an abandoned child, say): close it all. libuv keeps
            // loops in process-wide signal tables, so a loop it still knows must not be freed.
            uv_walk(raw, { handle, _ in
                if uv_is_closing(handle) == 0 { uv_close(handle, nil) }
            }, nil)
            uv_run(raw, UV_RUN_DEFAULT)
            guard uv_loop_close(raw) == 0 else { return }
        }
        raw.deallocate()
        readBuffer.deallocate()
    }

    /// Traps in debug builds when called off the loop's thread: loop-owned state is not
    /// locked, so touching it from another thread is a bug.
    public func assertOnLoopThread(_ file: StaticString = #fileID, line: UInt = #line) {
        assert(pthread_equal(ownerThread, pthread_self()) != 0, "loop state touched off the loop thread", file: file, line: line)
    }

    /// Runs until `stop()` or until no referenced handle is left.
    public func run() {
        uv_run(raw, UV_RUN_DEFAULT)
    }

    /// Runs one iteration without blocking; returns whether handles remain.
    @discardableResult
    public func runOnce(block: Bool = false) -> Bool {
        uv_run(raw, block ? UV_RUN_ONCE : UV_RUN_NOWAIT) != 0
    }

    public func stop() { uv_stop(raw) }

    /// The loop's cached time in milliseconds (monotonic).
    public var nowMs: UInt64 { uv_now(raw) }

    /// Brings the loop's cached time up to date (timers count from it; after slow work in
    /// a callback, such as a spawn, it lags behind the clock).
    public func refreshTime() { uv_update_time(raw) }

    static func from(_ loop: UnsafeMutablePointer<uv_loop_t>?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(loop!.pointee.data).takeUnretainedValue()
    }

    static func describe(_ code: Int32) -> String {
        "\(String(cString: uv_strerror(code))) (\(String(cString: uv_err_name(code))))"
    }
}

/// Frees a handle's memory after libuv has closed it; used by handles owned elsewhere.
func freeHandleAfterClose(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    handle?.deallocate()
}

/// Allocates a libuv handle of type T, typed for passing as uv_handle_t too.
func allocateHandle<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
    // uv_handle_t is the common prefix; allocate the full type, zeroed.
    let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
    UnsafeMutableRawPointer(pointer).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
    return pointer
}

func asHandle<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_handle_t.self)
}

func asStream<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_stream_t.self)
}

/// Closes a handle whose memory came from `allocateHandle` and has no owner to notify.
func closeAndFree<T>(_ pointer: UnsafeMutablePointer<T>) {
    let handle = asHandle(pointer)
    if uv_is_closing(handle) == 0 {
        uv_close(handle) { closed in
            UnsafeMutableRawPointer(closed!).deallocate()
        }
    }
}

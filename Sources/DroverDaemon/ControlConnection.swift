import CLibUV
import DroverCore
import DroverWire
import Glibc

/// One client connection to the daemon: the same framing as workers. The client sends one
/// request frame; the daemon answers with one frame, or a stream of frames, then closes.
/// A client cannot hold the daemon hostage (SPEC 16.6): it has 10 s to send its whole
/// request, the request may be no larger than a worker frame, and a client that does not
/// read its answers is dropped once they pass `maxBufferedBytes`.
final class ControlConnection {
    static let requestDeadlineMs = 10_000

    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private var decoder: FrameDecoder
    private let maxBufferedBytes: Int
    private var deadline: LoopTimer?
    private var selfReference: Unmanaged<ControlConnection>?
    /// Run as each queued write completes (or is cancelled by the close), oldest first.
    private var writeCallbacks: [(() -> Void)?] = []
    private var finishing = false
    private(set) var isClosed = false
    private var gotRequest = false
    private let whenClosed: () -> Void

    var onRequest: (ControlRequest) -> Void = { _ in }
    /// The client went away or the connection ended; stream subscriptions end here.
    var onClose: () -> Void = {}

    /// `whenClosed` runs once, after `onClose`, whoever set that.
    init(handle: UnsafeMutablePointer<uv_pipe_t>, loop: EventLoop, config: DroverConfig, whenClosed: @escaping () -> Void = {}) {
        self.handle = handle
        decoder = FrameDecoder(maxFrameBytes: config.maxFrameBytes)
        maxBufferedBytes = config.maxBufferedBytes
        deadline = LoopTimer(loop: loop)
        self.whenClosed = whenClosed
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        selfReference = Unmanaged.passRetained(self)
    }

    func start() {
        deadline?.start(after: Self.requestDeadlineMs) { [unowned self] in
            self.refuse("no whole request within \(Self.requestDeadlineMs / 1000) s")
        }
        uv_read_start(asStream(handle), { handle, _, buffer in
            let connection = Unmanaged<ControlConnection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            let storage = connection.readBuffer
            buffer!.pointee = uv_buf_init(storage.assumingMemoryBound(to: CChar.self), UInt32(ControlConnection.readBufferSize))
        }, { stream, count, buffer in
            let connection = Unmanaged<ControlConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            connection.received(count: count, base: buffer.flatMap { UnsafeRawPointer($0.pointee.base) })
        })
    }

    static let readBufferSize = 16 * 1024
    private lazy var readBuffer = UnsafeMutableRawPointer.allocate(byteCount: ControlConnection.readBufferSize, alignment: 16)

    private func received(count: Int, base: UnsafeRawPointer?) {
        guard count >= 0, let base else {
            close()  // EOF or error: the client is gone
            return
        }
        guard !gotRequest else { return }  // one request per connection; later bytes are ignored
        decoder.append(UnsafeRawBufferPointer(start: base, count: count))
        let frame: Frame?
        do {
            frame = try decoder.next()
        } catch {
            if case .tooLarge(let length, let limit, _) = error {
                return refuse("request of \(length) bytes is over the limit of \(limit) (maxFrameBytes)")
            }
            return refuse("bad request: \(error)")
        }
        guard let frame else { return }
        gotRequest = true
        deadline?.stop()
        deadline = nil
        let request: ControlRequest
        do {
            request = try ControlRequest.decode(frame.object)
        } catch {
            return refuse(error.message)
        }
        onRequest(request)
    }

    /// Answers a request that will not be served with an error (code 2), reads no more of
    /// it, and closes.
    private func refuse(_ message: String) {
        gotRequest = true
        deadline?.stop()
        deadline = nil
        uv_read_stop(asStream(handle))
        send(ErrorReply(code: 2, message: message))
        finish()
    }

    func send(_ reply: some ControlReply) {
        send(reply.frame())
    }

    func send(_ frame: JSONObject) {
        send(encoded: FrameEncoder.encode(frame))
    }

    /// Queues a frame already encoded (header included). A client that lets more than
    /// `maxBufferedBytes` wait unread is closed: what is pushed to it would grow without
    /// bound. Frames sent with `whenWritten` (run once the client has the frame, or the
    /// connection closed first) are paced by their sender, which waits for it, so they are
    /// never the cause.
    func send(encoded bytes: [UInt8], whenWritten: (() -> Void)? = nil) {
        guard !isClosed, !finishing else {
            whenWritten?()
            return
        }
        let queued = uv_stream_get_write_queue_size(asStream(handle))
        if whenWritten == nil && queued > 0 && queued + bytes.count > maxBufferedBytes {
            return close()
        }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<uv_write_t>.stride + bytes.count, alignment: 16)
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = memory + MemoryLayout<uv_write_t>.stride
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, asStream(handle), &buffer, 1) { request, _ in
            let connection = Unmanaged<ControlConnection>.fromOpaque(request!.pointee.handle.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(request!).deallocate()
            connection.written()
        }
        if rc != 0 {
            memory.deallocate()
            whenWritten?()
            close()
        } else {
            writeCallbacks.append(whenWritten)
        }
    }

    private func written() {
        let callback = writeCallbacks.removeFirst()
        callback?()
        if finishing && writeCallbacks.isEmpty { close() }
    }

    /// Closes once every queued frame is written.
    func finish() {
        guard !isClosed else { return }
        if writeCallbacks.isEmpty {
            close()
        } else {
            finishing = true
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        deadline?.stop()
        deadline = nil
        onClose()
        onClose = {}
        onRequest = { _ in }
        whenClosed()
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let connection = Unmanaged<ControlConnection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(handle!).deallocate()
            connection.readBuffer.deallocate()
            connection.selfReference?.release()
            connection.selfReference = nil
        }
    }
}

func asStream<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_stream_t.self)
}

func asHandle<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: uv_handle_t.self)
}

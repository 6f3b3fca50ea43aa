import CLibUV
import DroverCore
import DroverWire
import Glibc

/// One client connection to the daemon: the same framing as workers. The client sends one
/// request frame; the daemon answers with one frame, or a stream of frames, then closes.
final class ControlConnection {
    /// Requests are small; a larger frame is refused without being buffered.
    static let maxRequestBytes = 1 << 20

    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private var decoder = FrameDecoder(maxFrameBytes: ControlConnection.maxRequestBytes)
    private var selfReference: Unmanaged<ControlConnection>?
    private var pendingWrites = 0
    private var finishing = false
    private(set) var isClosed = false
    private var gotRequest = false

    var onRequest: (JSONObject) -> Void = { _ in }
    /// The client went away or the connection ended; stream subscriptions end here.
    var onClose: () -> Void = {}

    init(handle: UnsafeMutablePointer<uv_pipe_t>) {
        self.handle = handle
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        selfReference = Unmanaged.passRetained(self)
    }

    func start() {
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
        do {
            if let frame = try decoder.next() {
                gotRequest = true
                onRequest(frame.object)
            }
        } catch {
            send(["type": "error", "code": 2, "message": .string("bad request: \(error)")])
            finish()
        }
    }

    /// Queues one frame for the client.
    func send(_ frame: JSONObject) {
        send(encoded: FrameEncoder.encode(frame))
    }

    /// Queues a frame already encoded (header included).
    func send(encoded bytes: [UInt8]) {
        guard !isClosed, !finishing else { return }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<uv_write_t>.stride + bytes.count, alignment: 16)
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = memory + MemoryLayout<uv_write_t>.stride
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, asStream(handle), &buffer, 1) { request, _ in
            let connection = Unmanaged<ControlConnection>.fromOpaque(request!.pointee.handle.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(request!).deallocate()
            connection.pendingWrites -= 1
            if connection.finishing && connection.pendingWrites == 0 { connection.close() }
        }
        if rc != 0 {
            memory.deallocate()
            close()
        } else {
            pendingWrites += 1
        }
    }

    /// Closes once every queued frame is written.
    func finish() {
        guard !isClosed else { return }
        if pendingWrites == 0 {
            close()
        } else {
            finishing = true
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        onClose()
        onClose = {}
        onRequest = { _ in }
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

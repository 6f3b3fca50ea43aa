import CLibUV
import DroverCore

/// Reads a descriptor the adapter inherited (its stdin, carrying drover's frames) on the
/// loop. Owns its uv_pipe_t; the handle is freed in its close callback.
final class InputPipe {
    private let handle: UnsafeMutablePointer<uv_pipe_t>
    fileprivate let buffer: UnsafeMutableRawPointer
    fileprivate static let bufferSize = 64 * 1024
    private var closed = false
    var onBytes: (UnsafeRawBufferPointer) -> Void = { _ in }
    var onEnd: () -> Void = {}

    /// Nil when the descriptor cannot be read as a stream (a regular file, say).
    init?(loop: EventLoop, fd: Int32) {
        handle = .allocate(capacity: 1)
        UnsafeMutableRawPointer(handle).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<uv_pipe_t>.size)
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
        uv_pipe_init(loop.raw, handle, 0)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        guard uv_pipe_open(handle, fd) == 0 else {
            close()
            return nil
        }
        uv_read_start(stream, inputAlloc, inputRead)
    }

    deinit { buffer.deallocate() }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    func close() {
        guard !closed else { return }
        closed = true
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { closedHandle in
            UnsafeMutableRawPointer(closedHandle!).deallocate()
        }
    }

    fileprivate func read(count: Int) {
        if count > 0 {
            onBytes(UnsafeRawBufferPointer(start: buffer, count: count))
        } else if count < 0 {
            close()
            onEnd()
        }
    }
}

private func inputAlloc(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ out: UnsafeMutablePointer<uv_buf_t>?) {
    let pipe = Unmanaged<InputPipe>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
    out!.pointee = uv_buf_init(pipe.buffer.assumingMemoryBound(to: CChar.self), UInt32(InputPipe.bufferSize))
}

private func inputRead(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    let pipe = Unmanaged<InputPipe>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
    pipe.read(count: count)
}

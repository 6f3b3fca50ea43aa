import CLibUV
import DroverCore
import DroverWire
import Glibc

/// Sends a file's lines to a client as `lines` frames, read on a thread of its own: a
/// transcript may hold a gigabyte, and reading it on the loop thread would stall every task.
/// The thread reads chunks of about 1 MiB that end at a line's end, encodes each as a frame
/// and hands it to the loop through a uv_async_t. It reads at most `readAhead` chunks beyond
/// what the client has been written, so memory stays bounded whatever the file's size and
/// however slowly the client reads.
final class LineFileStreamer {
    static let readAhead = 2

    /// About 1 MiB, less under a small `maxBufferedBytes`: the chunks read ahead take no
    /// more than a quarter of what a connection may hold unsent.
    static func chunkBytes(_ config: DroverConfig) -> Int {
        min(1 << 20, max(4096, config.maxBufferedBytes / 8))
    }

    /// The reading thread's side, shared with the loop under `lock`.
    private final class Shared: @unchecked Sendable {
        let lock = ConditionLock()
        var credits = LineFileStreamer.readAhead
        var cancelled = false
        var frames: [[UInt8]] = []
        /// Set by the thread as it ends.
        var end: End?

        func locked<T>(_ body: () -> T) -> T { lock.withLock(body) }
    }

    private let shared = Shared()
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private var thread = pthread_t()
    private var threadStarted = false
    private var selfReference: Unmanaged<LineFileStreamer>?
    private let send: (_ frame: [UInt8], _ whenWritten: @escaping () -> Void) -> Void
    private var finished: ((_ end: End) -> Void)?

    /// Where a stream stopped: the file offset after the last line sent, and how many of the
    /// lines asked for were not there.
    struct End {
        let offset: Int
        let missingLines: Int
    }

    /// Streams the lines of `path` from byte `offset` on: all of them, or the first
    /// `maxLines`. `send` queues a frame for the client and calls `whenWritten` once it is
    /// written; `finished` gets the offset after the last line sent (never called once
    /// cancelled). A file that does not exist has no lines.
    init(loop: EventLoop, path: String, from offset: Int = 0, maxLines: Int? = nil, chunkBytes: Int,
         send: @escaping (_ frame: [UInt8], _ whenWritten: @escaping () -> Void) -> Void,
         finished: @escaping (_ end: End) -> Void) {
        self.send = send
        self.finished = finished
        wakeup = UnsafeMutablePointer<uv_async_t>.allocate(capacity: 1)
        uv_async_init(loop.raw, wakeup) { handle in
            Unmanaged<LineFileStreamer>.fromOpaque(handle!.pointee.data).takeUnretainedValue().deliver()
        }
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        selfReference = Unmanaged.passRetained(self)  // until the thread has ended
        let reader = Reader(shared: shared, wakeup: wakeup, path: path, offset: offset, maxLines: maxLines, chunkBytes: chunkBytes)
        let context = Unmanaged.passRetained(reader)
        threadStarted = pthread_create(&thread, nil, { context in
            Unmanaged<Reader>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context.toOpaque()) == 0
        if !threadStarted {
            // No thread to read with (the process is at its limit): end with nothing sent.
            context.release()
            shared.locked { shared.end = End(offset: offset, missingLines: maxLines ?? 0) }
            uv_async_send(wakeup)
        }
    }

    /// Stops reading; nothing more is sent.
    func cancel() {
        finished = nil
        shared.locked {
            shared.cancelled = true
            shared.lock.signal()
        }
    }

    /// On the loop: sends what the thread has read, and ends once it has ended.
    private func deliver() {
        let shared = self.shared
        let (frames, end) = shared.locked { () -> ([[UInt8]], End?) in
            defer { shared.frames = [] }
            return (shared.frames, shared.end)
        }
        for frame in frames {
            send(frame) {
                shared.locked {
                    shared.credits += 1
                    shared.lock.signal()
                }
            }
        }
        guard let end else { return }
        // The thread's last act was to wake the loop: it is ending, so this join is brief,
        // and after it nothing touches the handle but the loop.
        if threadStarted { pthread_join(thread, nil) }
        uv_close(asHandle(wakeup)) { handle in
            let streamer = Unmanaged<LineFileStreamer>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(handle!).deallocate()
            streamer.selfReference?.release()
            streamer.selfReference = nil
        }
        let finished = self.finished
        self.finished = nil
        finished?(end)
    }

    /// The reading thread.
    private final class Reader: @unchecked Sendable {
        let shared: Shared
        let wakeup: UnsafeMutablePointer<uv_async_t>
        let path: String
        let chunkBytes: Int
        var offset: Int
        var linesLeft: Int?

        init(shared: Shared, wakeup: UnsafeMutablePointer<uv_async_t>, path: String, offset: Int, maxLines: Int?, chunkBytes: Int) {
            self.shared = shared
            self.wakeup = wakeup
            self.path = path
            self.offset = offset
            self.chunkBytes = chunkBytes
            linesLeft = maxLines
        }

        func run() {
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            if fd >= 0 {
                if lseek(fd, off_t(offset), SEEK_SET) == off_t(offset) { readLines(fd) }
                close(fd)
            }
            shared.locked { shared.end = End(offset: offset, missingLines: linesLeft ?? 0) }
            uv_async_send(wakeup)
        }

        private func readLines(_ fd: Int32) {
            var pending: [UInt8] = []  // read and not yet sent
            var pendingHasLine = false
            var atEnd = false
            var buffer = [UInt8](repeating: 0, count: chunkBytes)
            while linesLeft != 0 && !(atEnd && pending.isEmpty) {
                guard waitForCredit() else { return }
                // A chunk's worth, and more only while not one whole line is in it.
                while !atEnd && (pending.count < chunkBytes || !pendingHasLine) {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        atEnd = true
                    } else {
                        pending.append(contentsOf: buffer[0..<n])
                        pendingHasLine = pendingHasLine || buffer[0..<n].contains(0x0A)
                    }
                }
                var chunk = takeLines(from: &pending)
                pendingHasLine = pending.contains(0x0A)
                if chunk.isEmpty {
                    // The end of the file: a last line without its newline is sent whole,
                    // unless only the lines already counted were asked for.
                    guard linesLeft == nil, !pending.isEmpty else { return }
                    offset += pending.count
                    chunk = pending + [0x0A]
                    pending = []
                }
                let frame = FrameEncoder.encode(LogsFrame.lines(String(decoding: chunk, as: UTF8.self)).frame())
                shared.locked { shared.frames.append(frame) }
                uv_async_send(wakeup)
            }
        }

        /// Takes the whole lines at the front of `pending` (no more than `linesLeft`),
        /// counting them and the bytes they take.
        private func takeLines(from pending: inout [UInt8]) -> [UInt8] {
            var cut = 0
            if var left = linesLeft {
                for (index, byte) in pending.enumerated() where byte == 0x0A {
                    cut = index + 1
                    left -= 1
                    if left == 0 { break }
                }
                linesLeft = left
            } else {
                cut = pending.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
            }
            let chunk = Array(pending[..<cut])
            pending.removeFirst(cut)
            offset += cut
            return chunk
        }

        /// Waits until the client has taken enough of what was sent; false when cancelled.
        private func waitForCredit() -> Bool {
            shared.locked {
                while shared.credits == 0 && !shared.cancelled { shared.lock.wait() }
                guard !shared.cancelled else { return false }
                shared.credits -= 1
                return true
            }
        }
    }
}

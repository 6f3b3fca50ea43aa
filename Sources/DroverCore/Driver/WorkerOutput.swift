import DroverWire
import Glibc

/// A framed worker's stdout as lifecycle events: frames decoded and checked, and the first
/// bad one ends the stream (everything after it is ignored).
struct FramedOutput {
    enum Item {
        /// A frame, with its payload bytes for the transcript.
        case frame(WorkerFrame, payload: [UInt8])
        /// A frame the transcript keeps but whose fields are wrong, then the problem.
        case invalidFrame(payload: [UInt8], problem: String)
        /// Bytes that are not a frame.
        case broken(String)
    }

    private var decoder: FrameDecoder
    private(set) var isBroken = false

    init(maxFrameBytes: Int) {
        decoder = FrameDecoder(maxFrameBytes: maxFrameBytes)
    }

    mutating func consume(_ bytes: UnsafeRawBufferPointer) -> [Item] {
        guard !isBroken else { return [] }
        decoder.append(bytes)
        var items: [Item] = []
        do {
            while let frame = try decoder.next() {
                do {
                    items.append(.frame(try WorkerFrame.decode(frame), payload: frame.payload))
                } catch {
                    isBroken = true
                    items.append(.invalidFrame(payload: frame.payload, problem: error.description))
                    break
                }
            }
        } catch {
            isBroken = true
            items.append(.broken(error.description))
        }
        return items
    }

    /// At the end of the stream: what was cut off mid-frame, if anything.
    func cutFrame() -> String? {
        guard !isBroken else { return nil }
        do {
            try decoder.finish()
            return nil
        } catch {
            return error.description
        }
    }
}

/// A raw program's stdout: each line is a message, and the last 64 KiB are its result.
struct RawOutput {
    static let resultBytes = 64 * 1024

    private var line: [UInt8] = []
    private var tail: [UInt8] = []

    /// The lines completed by these bytes (a line longer than 64 KiB is cut into pieces).
    mutating func consume(_ bytes: UnsafeRawBufferPointer) -> [String] {
        tail.append(contentsOf: bytes)
        if tail.count > 2 * Self.resultBytes { tail.removeFirst(tail.count - Self.resultBytes) }
        var lines: [String] = []
        guard let base = bytes.baseAddress else { return lines }
        var start = 0
        while start < bytes.count, let found = memchr(base + start, 0x0A, bytes.count - start) {
            let end = UnsafeRawPointer(found) - base
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            lines.append(takeLine())
            start = end + 1
        }
        line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...]))
        while line.count >= Self.resultBytes {
            let piece = Array(line.prefix(Self.resultBytes))
            line.removeFirst(Self.resultBytes)
            lines.append(String(decoding: piece, as: UTF8.self))
        }
        return lines
    }

    /// The unfinished last line, if any (at the end of the output).
    mutating func finishLine() -> String? {
        line.isEmpty ? nil : takeLine()
    }

    var result: String { String(decoding: tail.suffix(Self.resultBytes), as: UTF8.self) }

    private mutating func takeLine() -> String {
        defer { line.removeAll(keepingCapacity: true) }
        return String(decoding: line, as: UTF8.self)
    }
}

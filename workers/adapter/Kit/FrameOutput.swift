import DroverWire
import Glibc

/// Writes frames to drover on a descriptor (stdout), synchronously: drover always reads, and
/// a frame is on its way before the next CLI line is looked at. Oversized fields are cut so
/// that no frame can come near drover's maxFrameBytes (16 MiB by default).
final class FrameOutput {
    static let maxTextBytes = 1024 * 1024
    static let maxInputBytes = 256 * 1024

    private let fd: Int32
    /// When the last frame went out (monotonic ms), for heartbeats.
    private(set) var lastSentMs: UInt64 = 0
    /// Set when drover stopped reading (EPIPE): nothing more can be said.
    private(set) var broken = false
    var now: () -> UInt64 = { 0 }

    init(fd: Int32) { self.fd = fd }

    func send(_ frame: JSONObject) {
        guard !broken else { return }
        writeAll(FrameEncoder.encode(Self.bounded(frame)))
        lastSentMs = now()
    }

    static func bounded(_ frame: JSONObject) -> JSONObject {
        var frame = frame
        for key in ["text", "message"] {
            if let text = frame[key]?.stringValue, text.utf8.count > maxTextBytes {
                frame[key] = .string(shortened(text, to: maxTextBytes))
            }
        }
        if let input = frame["input"] {
            let size = JSONWriter.bytes(input).count
            if size > maxInputBytes { frame["input"] = ["cut": true, "bytes": JSONValue(size)] }
        }
        return frame
    }

    private func writeAll(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    // Only if drover handed us a non-blocking descriptor: wait, bounded.
                    var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    if poll(&ready, 1, 10_000) > 0 { continue }
                }
                broken = true
                return
            }
            offset += written
        }
    }
}

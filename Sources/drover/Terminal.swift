import DroverCore
import Glibc

/// Output helpers: plain writes to stdout and stderr, and a line redrawn in place.
enum Terminal {
    static func out(_ text: String) {
        write(1, text + "\n")
    }

    static func error(_ text: String) {
        write(2, text + "\n")
    }

    static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Redraws one status line on a terminal (erase, carriage return, text).
    static func redraw(_ fd: Int32, _ text: String) {
        write(fd, "\r\u{1B}[2K" + text)
    }

    static func clearLine(_ fd: Int32) {
        write(fd, "\r\u{1B}[2K")
    }

    static func bar(done: Int, total: Int, width: Int) -> String {
        let filled = total == 0 ? width : min(width, done * width / max(total, 1))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func padLeft(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    static func seconds(_ ms: Int64) -> String {
        let tenths = (ms + 5) / 10
        let frac = String(tenths % 100)
        return "\(tenths / 100)." + (frac.count < 2 ? "0" : "") + frac + "s"
    }
}

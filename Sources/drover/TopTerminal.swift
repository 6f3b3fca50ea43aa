import CDroverSystem
import DroverDaemon
import Glibc

/// The terminal as `drover top` uses it: raw mode on the alternate screen, given back as it
/// was however top ends (q, Ctrl-C, SIGTERM or SIGHUP, a daemon that dies, exit()); signals
/// arrive as bytes on a pipe the event loop polls.
final class TopTerminal {
    /// The read end of the signal pipe: one byte per signal, its number.
    let signals: Int32

    /// Puts the terminal on stdin/stdout in raw mode on the alternate screen.
    init() throws(TopFailure) {
        var original = termios()
        guard tcgetattr(0, &original) == 0 else { throw TopFailure("drover top needs a terminal: \(String(cString: strerror(errno)))", exitCode: 2) }
        var fds: [Int32] = [-1, -1]
        guard drover_pipe(&fds) == 0 else { throw TopFailure("drover top: cannot make a pipe: \(String(cString: strerror(errno)))", exitCode: 1) }
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        signals = fds[0]
        signalPipe = fds[1]
        savedTerminal = original
        atexit { restoreTerminal() }
        for number in [SIGINT, SIGTERM, SIGHUP, SIGWINCH] {
            signal(number) { number in
                // Only what is async-signal-safe: one write(2), errno kept.
                let saved = errno
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(signalPipe, &byte, 1)
                errno = saved
            }
        }
        var raw = original
        // No echo, no line editing, Ctrl-C as a byte (it quits, after the terminal is back).
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL | BRKINT | INPCK | ISTRIP)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        tcsetattr(0, TCSADRAIN, &raw)
        // The alternate screen, the cursor hidden.
        Terminal.write(1, "\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J")
    }

    /// Gives the terminal back; later calls (and the atexit hook) do nothing.
    func restore() { restoreTerminal() }

    /// Rows and columns now (80×24 when the terminal does not say).
    func size() -> (width: Int, height: Int) {
        var rows: Int32 = 0
        var columns: Int32 = 0
        guard drover_terminal_size(1, &rows, &columns) == 0, rows > 0, columns > 0 else { return (80, 24) }
        return (Int(columns), Int(rows))
    }

    /// Draws a whole screen in one write: each line erased to its end, nothing left below.
    func draw(_ lines: [ScreenLine], width: Int) {
        var text = "\u{1B}[H"
        for (index, line) in lines.enumerated() {
            switch line.style {
            case .plain: text += line.text
            case .title: text += "\u{1B}[1m" + line.text
            case .heading: text += "\u{1B}[1;4m" + line.text
            case .footer: text += "\u{1B}[7m" + line.text + String(repeating: " ", count: max(0, width - TopScreen.displayWidth(line.text)))
            // The selected row in reverse video across the screen.
            case .selected: text += "\u{1B}[7m" + line.text + String(repeating: " ", count: max(0, width - TopScreen.displayWidth(line.text)))
            }
            text += "\u{1B}[0m"
            if TopScreen.displayWidth(line.text) < width { text += "\u{1B}[K" }
            if index < lines.count - 1 { text += "\r\n" }
        }
        Terminal.write(1, text + "\u{1B}[J")
    }

    /// Reads what the terminal sent; nil at its end (the terminal went away).
    func readKeys() -> [TopKey]? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return [] }
        guard n > 0 else { return nil }
        return TopKey.decode(Array(buffer[0..<n]))
    }

    /// The signals that arrived since the last call.
    func readSignals() -> [Int32] {
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { read(signals, $0.baseAddress, $0.count) }
        return n > 0 ? buffer[0..<n].map { Int32($0) } : []
    }
}

/// Why top stopped early: the message for stderr (after the terminal is back) and the exit status.
struct TopFailure: Error {
    let message: String
    let exitCode: Int32

    init(_ message: String, exitCode: Int32) {
        self.message = message
        self.exitCode = exitCode
    }
}

// What a signal handler and the atexit hook reach: C callbacks capture nothing, so these are
// globals, written once before the handlers are installed.
nonisolated(unsafe) private var signalPipe: Int32 = -1
nonisolated(unsafe) private var savedTerminal: termios?

private func restoreTerminal() {
    guard var original = savedTerminal else { return }
    savedTerminal = nil
    Terminal.write(1, "\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l")
    tcsetattr(0, TCSADRAIN, &original)
}

import Glibc
import Logging
import Synchronization

/// drover's own messages (swift-log): to stderr as `drover: text` for the command line and
/// `drover run`, and with a timestamp and level before it for the daemon, whose stderr is
/// daemon.log (`2026-12-03T13:30:00.123Z warning drover: text`).
public enum DroverLog {
    public static let logger = Logger(label: "drover")
    private static let stamped = Mutex(false)

    /// Every handler of this process writes to stderr (once, at the start of `main`).
    public static func bootstrap() {
        LoggingSystem.bootstrap { _ in StderrLogHandler() }
    }

    /// From now on each line has its timestamp and level (the daemon).
    public static func stampLines() { stamped.withLock { $0 = true } }

    static var isStamped: Bool { stamped.withLock { $0 } }
}

/// One line per message on stderr, written whole with one write(2).
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var text = "drover: \(event.message)"
        if DroverLog.isStamped { text = "\(Clock.rfc3339(ms: Clock.wallMs())) \(event.level) " + text }
        var bytes = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
}

import CDroverSystem
import CLibUV
import Glibc

/// What a supervising process sets up once, before its first child.
public enum ProcessSetup {
    /// Idempotent: later calls do nothing (libuv's SIGCHLD handler, once installed, must
    /// never be replaced).
    public static func prepare() {
        _ = preparedOnce
    }

    /// Unblocks every signal this thread inherited blocked (a parent's blocked mask survives
    /// exec; a `drover` started from such a parent would otherwise ignore SIGTERM).
    public static func unblockSignals() {
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
    }

    /// A drover started inside a task is one level deeper than the one that runs the task
    /// (DROVER_DEPTH); past `maxDepth` it refuses to supervise, so agents cannot fan out
    /// without bound. Returns the refusal, or nil.
    public static func nestingRefusal(maxDepth: Int, environment: [String: String]) -> String? {
        let depth = Int(environment["DROVER_DEPTH"] ?? "0") ?? 0
        guard depth >= maxDepth else { return nil }
        return "refusing to start: this drover runs inside a task at depth \(depth), and maxDepth is \(maxDepth)"
    }

    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Columns of the terminal on fd, or 80.
    public static func terminalWidth(_ fd: Int32) -> Int {
        var size = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return Int(size.ws_col) }
        return 80
    }
}

private let preparedOnce: Void = {
    // A parent may have blocked or ignored signals (a test runner's thread, some CI
    // runners). libuv needs SIGCHLD delivered to reap children, and an ignored SIGCHLD
    // would stop exit callbacks altogether.
    ProcessSetup.unblockSignals()
    if drover_sigchld_is_ignored() != 0 { signal(SIGCHLD, SIG_DFL) }
    // A worker that closes its stdin must not kill the supervisor with SIGPIPE.
    signal(SIGPIPE, SIG_IGN)
    // Nothing inherited from whoever started drover may leak into a worker.
    drover_cloexec_from_3()
    // Each running task holds three pipes and the writer opens files: lift the soft
    // descriptor limit to the hard one.
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}()

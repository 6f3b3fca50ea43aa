import Glibc

/// When a process started, from /proc, as unix milliseconds. With the pid and the start
/// time a task recorded (`started_at`), a later supervisor can tell the task's process from
/// an unrelated one that reuses its pid.
public enum ProcessStartTime {
    /// nil when no process (not even a zombie) has this pid.
    public static func wallMs(of pid: Int32) -> Int64? {
        guard let bytes = try? FileSystem.read("/proc/\(pid)/stat"), let boot = bootTimeSeconds else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // The command name (field 2) may hold spaces; count fields after its closing ")".
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 (start time in clock ticks) is fields[19].
        guard fields.count > 19, let ticks = Int64(fields[19]) else { return nil }
        let hz = Int64(sysconf(Int32(_SC_CLK_TCK)))
        return boot * 1000 + ticks * 1000 / max(hz, 1)
    }

    /// Whether the process with this pid started at `startedMs` (within two seconds: the
    /// boot time has a resolution of one second, and a pid is not reused that fast).
    public static func isSameProcess(pid: Int32, startedMs: Int64) -> Bool {
        guard let started = wallMs(of: pid) else { return false }
        return abs(started - startedMs) < 2000
    }

    private static var bootTimeSeconds: Int64? {
        guard let bytes = try? FileSystem.read("/proc/stat") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Int64(line.dropFirst(6))
        }
        return nil
    }
}

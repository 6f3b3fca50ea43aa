/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat). With the
/// pid it names one process for good: a pid reused later has a later start time.
public enum ProcessStartTime {
    /// nil when no process (not even a zombie) has this pid.
    public static func ticks(of pid: Int32) -> UInt64? {
        guard let bytes = try? FileSystem.read("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // The command name (field 2) may hold spaces; count fields after its closing ")".
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }
}

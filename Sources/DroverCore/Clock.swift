import CLibUV

/// Wall-clock time for files (unix milliseconds, RFC 3339) and a monotonic clock for latency.
public enum Clock {
    /// Milliseconds since the Unix epoch.
    public static func wallMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Monotonic nanoseconds.
    public static func monotonicNs() -> UInt64 { uv_hrtime() }

    /// `2026-11-22T01:52:20.123Z`.
    public static func rfc3339(ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let millis = Int32(ms % 1000)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(millis, 3))Z"
    }

    /// `20261122T015220Z`: a compact UTC stamp for folder names.
    public static func compactStamp(ms: Int64) -> String {
        let full = rfc3339(ms: ms)
        let digits = full.prefix(19).filter { $0 != "-" && $0 != ":" }
        return digits + "Z"
    }
}

/// Durations as SPEC section 4 writes them: a number of milliseconds, or a string with a unit
/// (`1500ms`, `90s`, `30m`, `2h`; fractions such as `1.5s` too).
public enum DurationText {
    /// Milliseconds, or nil when the text is not a duration.
    public static func milliseconds(_ text: String) -> Int? {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return nil }
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var number = Substring(trimmed)
        var scale = 1.0
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            let candidate = trimmed.dropLast(suffix.count)
            // "ms" must win over "s": only accept a suffix that leaves a plain number.
            if Double(candidate.trimmingSpaces) != nil {
                number = Substring(candidate.trimmingSpaces)
                scale = factor
                break
            }
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let ms = (value * scale).rounded()
        guard ms < 9.0e15 else { return nil }
        return Int(ms)
    }

    /// Milliseconds from a JSON number (ms) or string.
    public static func milliseconds(_ value: JSONValue) -> Int? {
        switch value {
        case .number(let n) where n.isFinite && n >= 0 && n < 9.0e15: return Int(n.rounded())
        case .string(let s): return milliseconds(s)
        default: return nil
        }
    }

    /// Short human form: 850ms, 1.2s, 3m 05s, 2h 01m.
    public static func format(milliseconds ms: Int) -> String {
        if ms < 1000 { return "\(ms)ms" }
        if ms < 60_000 {
            let tenths = (ms + 50) / 100
            return "\(tenths / 10).\(tenths % 10)s"
        }
        let seconds = ms / 1000
        if seconds < 3600 {
            let s = seconds % 60
            return "\(seconds / 60)m \(s < 10 ? "0" : "")\(s)s"
        }
        let m = (seconds / 60) % 60
        return "\(seconds / 3600)h \(m < 10 ? "0" : "")\(m)m"
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}

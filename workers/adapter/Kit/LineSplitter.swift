/// Splits a byte stream into lines (without their "\n"), like a frame decoder for JSON lines:
/// fed whatever a read returned, it hands out complete lines and keeps the rest. A line
/// longer than `maxLineBytes` is an error rather than unbounded memory.
public struct LineSplitter: Sendable {
    public struct Overflow: Error, Equatable, Sendable {
        public let limit: Int
        public init(limit: Int) { self.limit = limit }
    }

    public let maxLineBytes: Int
    private var pending: [UInt8] = []

    public init(maxLineBytes: Int = 64 * 1024 * 1024) {
        self.maxLineBytes = maxLineBytes
    }

    public mutating func append(_ bytes: some Collection<UInt8>) throws(Overflow) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var rest = bytes[...]
        while let newline = rest.firstIndex(of: 0x0A) {
            pending.append(contentsOf: rest[..<newline])
            if pending.last == 0x0D { pending.removeLast() }
            lines.append(pending)
            pending.removeAll(keepingCapacity: true)
            rest = rest[rest.index(after: newline)...]
        }
        pending.append(contentsOf: rest)
        if pending.count > maxLineBytes { throw Overflow(limit: maxLineBytes) }
        return lines
    }

    /// The last line when the stream ended without a newline, if there is one.
    public mutating func finish() -> [UInt8]? {
        defer { pending = [] }
        return pending.isEmpty ? nil : pending
    }
}

/// Whether a line holds nothing but whitespace (skipped, not an error).
public func isBlank(_ line: [UInt8]) -> Bool {
    line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
}

/// A line quoted for an error message: between backticks, cut to `limit` bytes, control
/// bytes escaped so the message stays on one line.
public func quoted(_ line: [UInt8], limit: Int = 200) -> String {
    let text = String(decoding: line.prefix(limit), as: UTF8.self)
    var out = "`"
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    out += "`"
    if line.count > limit { out += " (the first \(limit) of its \(line.count) bytes)" }
    return out
}

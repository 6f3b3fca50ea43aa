import Glibc

/// A transcript line: `{"t": ms, "dir": "in"|"out", ...frame}` on one line, built from the
/// frame's JSON bytes without parsing them again.
enum TranscriptLine {
    static func build(direction: String, objectBytes: [UInt8], wallMs: Int64) -> [UInt8]? {
        // Skip the frame's own "{"; a non-empty object continues with "," before its members.
        guard let brace = objectBytes.firstIndex(of: UInt8(ascii: "{")) else { return nil }
        var line = Array("{\"t\":\(wallMs),\"dir\":\"\(direction)\"".utf8)
        line.reserveCapacity(line.count + objectBytes.count + 2)
        let rest = objectBytes[(brace + 1)...].drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        if rest.first != UInt8(ascii: "}") { line.append(UInt8(ascii: ",")) }
        // Newlines can only be whitespace in valid JSON (inside strings they are escaped).
        // Replaced in bulk with memchr: a byte-by-byte loop made a flood of large frames ten
        // times slower in debug builds.
        let copied = line.count
        line.append(contentsOf: rest)
        line.withUnsafeMutableBufferPointer { buffer in
            let tail = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[copied...])
            guard let start = tail.baseAddress else { return }
            let end = start + tail.count
            for lineBreak: UInt8 in [0x0A, 0x0D] {
                var from = start
                while from < end, let found = memchr(from, Int32(lineBreak), end - from) {
                    found.storeBytes(of: 0x20, as: UInt8.self)
                    from = found + 1
                }
            }
        }
        line.append(0x0A)
        return line
    }
}

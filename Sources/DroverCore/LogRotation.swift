import Glibc

/// events.jsonl and usage.jsonl grow with every task: before a write would take one past
/// `maxBytes`, it is renamed `.1` (an older `.1` to `.2`, and so on; the `.maxFiles` one is
/// replaced), and a new file starts (SPEC 15). Readers take the rotated files, oldest
/// first, then the current one (`readAll`), so nothing that reads them back sees a gap.
public struct LogRotation: Sendable {
    public var maxBytes: Int
    public var maxFiles: Int
    /// The files of the root that rotate.
    public static let names: Set<String> = ["events.jsonl", "usage.jsonl"]

    public init(maxBytes: Int = 64 << 20, maxFiles: Int = 5) {
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
    }

    /// The name when `relative` is one of the rotating files, else nil.
    func rotatedName(_ relative: String) -> String? { Self.names.contains(relative) ? relative : nil }

    /// Whether appending `adding` bytes to the open file would pass `maxBytes` (an empty file
    /// takes any write: a single line bigger than the limit is still written).
    func isFull(fd: Int32, adding: Int) -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return info.st_size > 0 && Int(info.st_size) + adding > maxBytes
    }

    /// Rotates `name` first when appending `adding` bytes would pass `maxBytes`.
    func rotateIfFull(_ name: String, adding: Int, in folder: SafeFolder) {
        guard let size = try? folder.status(name).size, size > 0, size + adding > maxBytes else { return }
        rotate(name, in: folder)
    }

    /// `name.(maxFiles-1)` → `name.maxFiles`, ..., `name` → `name.1`. A rename that fails
    /// leaves the file where it was: it then grows on, and nothing is lost.
    func rotate(_ name: String, in folder: SafeFolder) {
        for number in stride(from: maxFiles - 1, through: 1, by: -1) {
            try? folder.rename("\(name).\(number)", to: "\(name).\(number + 1)")
        }
        try? folder.rename(name, to: "\(name).1")
    }

    /// The rotated files of `name` that exist, oldest first (`.N` down to `.1`).
    public static func rotatedFiles(_ name: String, in folder: SafeFolder) -> [String] {
        var found: [String] = []
        var number = 1
        while (try? folder.status("\(name).\(number)"))?.kind == .file {
            found.append("\(name).\(number)")
            number += 1
        }
        return found.reversed()
    }

    /// Everything `name` holds, its rotated files first (oldest first); nil when none exists.
    public static func readAll(_ name: String, in folder: SafeFolder) -> [UInt8]? {
        var bytes: [UInt8] = []
        var any = false
        for file in rotatedFiles(name, in: folder) + [name] {
            guard let part = try? folder.read(file) else { continue }
            any = true
            // A file cut short by a crash may lack its last newline: its line stays whole.
            if let last = bytes.last, last != 0x0A { bytes.append(0x0A) }
            bytes.append(contentsOf: part)
        }
        return any ? bytes : nil
    }
}

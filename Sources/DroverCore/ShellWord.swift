/// A word as sh reads it back unchanged, quoted only when it needs to be: for commands drover
/// prints or records for a person to paste into a shell (drover itself never runs one).
public func shellQuoted(_ word: String) -> String {
    let plain = !word.isEmpty && word.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || "/._-+=:,@".utf8.contains(byte)
    }
    return plain ? word : "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}

/// Words as one command line for a person to paste into a shell.
public func shellLine(_ words: [String]) -> String {
    words.map(shellQuoted).joined(separator: " ")
}

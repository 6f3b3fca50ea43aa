import DroverWire
import Glibc

/// Reads a Claude Code transcript (JSON lines at the hook's `transcript_path`) for the
/// answers drover's tools gave in it, from where the last run stopped: a hook runs on every
/// tool call, so it reads only what was added since.
///
/// Why the transcript tells which tasks belong to a session: it is the conversation's own
/// record, so a task is the session's exactly when the model got its launch answer, however
/// the MCP server is named, restarted or shared. Tagging tasks in the MCP server instead
/// (Claude Code 2.1.332 does pass CLAUDE_CODE_SESSION_ID to MCP server processes) would
/// need a tag the daemon does not keep, and a server process can outlive the session it
/// was started for (`/clear` begins a new one). The answer of the tool just used is in the
/// hook's own input, since Claude Code writes it to the transcript only after PostToolUse.
enum ClaudeTranscript {
    /// The most read in one run; the rest waits for the next.
    static let maxReadBytes = 64 << 20

    /// What drover's answers in the transcript told the model after `offset`, and the
    /// offset after the last whole line read. A transcript that shrank is read again from
    /// its start.
    static func scan(path: String, from offset: Int) throws(ClaudeHookError) -> (seen: DroverToolText, offset: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ClaudeHookError("cannot open the transcript \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw ClaudeHookError("the transcript \(path) is not a file") }
        let size = Int(info.st_size)
        let start = size < offset ? 0 : offset
        let length = min(size - start, maxReadBytes)
        guard length > 0 else { return (DroverToolText(), start) }
        var bytes = [UInt8](repeating: 0, count: length)
        var filled = 0
        while filled < length {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, length - filled, off_t(start + filled)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        guard let lastNewline = bytes[0..<filled].lastIndex(of: 0x0A) else { return (DroverToolText(), start) }
        var seen = DroverToolText()
        var lineStart = 0
        while lineStart <= lastNewline {
            let lineEnd = bytes[lineStart...lastNewline].firstIndex(of: 0x0A)!
            let line = bytes[lineStart..<lineEnd]
            if mayHoldDroverAnswer(line) { seen.add(scanLine(line)) }
            lineStart = lineEnd + 1
        }
        return (seen, start + lastNewline + 1)
    }

    /// Tool results in one transcript line: `{"type": "user", "message": {"content": [
    /// {"type": "tool_result", "content": "..." or [{"type": "text", "text": "..."}]}]}}`.
    static func scanLine(_ line: ArraySlice<UInt8>) -> DroverToolText {
        var seen = DroverToolText()
        guard let entry = try? JSONParser.parse(line).value.objectValue, entry["type"]?.stringValue == "user",
              let blocks = entry["message"]?.objectValue?["content"]?.arrayValue else { return seen }
        for block in blocks {
            guard let block = block.objectValue, block["type"]?.stringValue == "tool_result" else { continue }
            for text in texts(in: block["content"]) { seen.add(DroverToolText.scan(text)) }
        }
        return seen
    }

    /// The texts of a tool result: a string, or text blocks (MCP answers), at any depth.
    static func texts(in value: JSONValue?) -> [String] {
        switch value {
        case .string(let text)?: return [text]
        case .array(let items)?: return items.flatMap { texts(in: $0) }
        case .object(let object)?: return texts(in: object["text"]) + texts(in: object["content"])
        default: return []
        }
    }

    /// Most lines hold no task id at all: those are skipped without parsing.
    private static func mayHoldDroverAnswer(_ line: ArraySlice<UInt8>) -> Bool {
        contains(line, Array("bg_".utf8)) && contains(line, Array("tool_result".utf8))
    }

    private static func contains(_ haystack: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        var index = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while index <= last {
            guard let first = haystack[index...last].firstIndex(of: needle[0]) else { return false }
            if haystack[first..<(first + needle.count)].elementsEqual(needle) { return true }
            index = first + 1
        }
        return false
    }
}

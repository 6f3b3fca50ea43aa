/// Where and why a JSON text failed to parse.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset into the input.
    public let offset: Int
    /// 1-based line and column of that byte.
    public let line: Int
    public let column: Int
    public let reason: String

    public var description: String { "\(reason) at line \(line), column \(column) (byte \(offset))" }
}

/// A recursive-descent JSON parser over bytes. With `jsonc` it also takes `//` and `/* */`
/// comments and trailing commas (the config format). With `recordLines` it notes the line
/// of every object member by its dotted key path, so config errors can name the line.
public struct JSONParser {
    public struct Options: Sendable {
        public var jsonc: Bool
        public var recordLines: Bool
        public var maxDepth: Int
        public init(jsonc: Bool = false, recordLines: Bool = false, maxDepth: Int = 512) {
            self.jsonc = jsonc
            self.recordLines = recordLines
            self.maxDepth = maxDepth
        }
    }

    public struct Parsed: Sendable {
        public let value: JSONValue
        /// Dotted key path ("agents.explore.command") to the 1-based line of its key.
        public let lines: [String: Int]
    }

    public static func parse(_ bytes: some Collection<UInt8>, options: Options = Options()) throws(JSONParseError) -> Parsed {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> Parsed in
            var parser = Cursor(bytes: buffer, options: options)
            return try parser.parseDocument()
        }
    }

    public static func parse(_ text: String, options: Options = Options()) throws(JSONParseError) -> Parsed {
        try parse(Array(text.utf8), options: options)
    }

    /// Parses a buffer without copying it (the frame decoder's path).
    public static func parse(buffer: UnsafeBufferPointer<UInt8>, options: Options = Options()) throws(JSONParseError) -> JSONValue {
        var parser = Cursor(bytes: buffer, options: options)
        return try parser.parseDocument().value
    }
}

private struct Cursor {
    let bytes: UnsafeBufferPointer<UInt8>
    let options: JSONParser.Options
    var index = 0
    var depth = 0
    var path: [String] = []
    var lines: [String: Int] = [:]
    var linesCountedTo = 0
    var linesSoFar = 1

    init(bytes: UnsafeBufferPointer<UInt8>, options: JSONParser.Options) {
        self.bytes = bytes
        self.options = options
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONParser.Parsed {
        try skipWhitespace()
        guard index < bytes.count else { throw error("empty document") }
        let value = try parseValue()
        try skipWhitespace()
        if index < bytes.count { throw error("unexpected \(describe(bytes[index])) after the end of the value") }
        return JSONParser.Parsed(value: value, lines: lines)
    }

    func error(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        let at = min(offset ?? index, bytes.count)
        var line = 1
        var lineStart = 0
        for i in 0..<at where bytes[i] == UInt8(ascii: "\n") {
            line += 1
            lineStart = i + 1
        }
        return JSONParseError(offset: at, line: line, column: at - lineStart + 1, reason: reason)
    }

    func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16)
    }

    /// The line of `offset`. Recorded offsets only grow, so counting resumes where it last
    /// stopped (counting from the start each time made a large config quadratic).
    mutating func lineNumber(at offset: Int) -> Int {
        if offset < linesCountedTo { (linesCountedTo, linesSoFar) = (0, 1) }
        while linesCountedTo < offset {
            if bytes[linesCountedTo] == 0x0A { linesSoFar += 1 }
            linesCountedTo += 1
        }
        return linesSoFar
    }

    mutating func skipWhitespace() throws(JSONParseError) {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09:
                index += 1
            case UInt8(ascii: "/") where options.jsonc:
                guard index + 1 < bytes.count else { throw error("unexpected '/'") }
                if bytes[index + 1] == UInt8(ascii: "/") {
                    index += 2
                    while index < bytes.count && bytes[index] != 0x0A { index += 1 }
                } else if bytes[index + 1] == UInt8(ascii: "*") {
                    let start = index
                    index += 2
                    while true {
                        guard index + 1 < bytes.count else { throw error("unterminated /* comment", at: start) }
                        if bytes[index] == UInt8(ascii: "*") && bytes[index + 1] == UInt8(ascii: "/") {
                            index += 2
                            break
                        }
                        index += 1
                    }
                } else {
                    throw error("unexpected '/'")
                }
            default:
                return
            }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected \(describe(bytes[index]))")
        }
    }

    mutating func expectWord(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end of input") }
        let start = word.utf8Start
        for i in 0..<count where bytes[index + i] != start[i] {
            throw error("unexpected \(describe(bytes[index]))")
        }
        index += count
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > options.maxDepth { throw error("nested deeper than \(options.maxDepth) levels") }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var object = JSONObject()
        try skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(object)
        }
        while true {
            try skipWhitespace()
            guard index < bytes.count else { throw error("unterminated object") }
            if bytes[index] == UInt8(ascii: "}") && options.jsonc && !object.isEmpty {
                index += 1
                break
            }
            guard bytes[index] == UInt8(ascii: "\"") else { throw error("expected a quoted key, found \(describe(bytes[index]))") }
            let keyOffset = index
            let key = try parseString()
            try skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\"") }
            index += 1
            try skipWhitespace()
            if options.recordLines {
                path.append(key)
                lines[path.joined(separator: ".")] = lineNumber(at: keyOffset)
            }
            let value = try parseValue()
            if options.recordLines { path.removeLast() }
            object[key] = value  // a duplicate key: the last value wins
            try skipWhitespace()
            guard index < bytes.count else { throw error("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                break
            }
            throw error("expected ',' or '}' in object, found \(describe(bytes[index]))")
        }
        depth -= 1
        return .object(object)
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var array: [JSONValue] = []
        try skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(array)
        }
        while true {
            try skipWhitespace()
            guard index < bytes.count else { throw error("unterminated array") }
            if bytes[index] == UInt8(ascii: "]") && options.jsonc && !array.isEmpty {
                index += 1
                break
            }
            if options.recordLines {
                path.append(String(array.count))
                lines[path.joined(separator: ".")] = lineNumber(at: index)
            }
            array.append(try parseValue())
            if options.recordLines { path.removeLast() }
            try skipWhitespace()
            guard index < bytes.count else { throw error("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                break
            }
            throw error("expected ',' or ']' in array, found \(describe(bytes[index]))")
        }
        depth -= 1
        return .array(array)
    }

    mutating func parseString() throws(JSONParseError) -> String {
        let start = index
        index += 1
        // Fast path: no escapes, so the bytes are the string. Plain constants rather than
        // UInt8(ascii:), which debug builds call for every byte.
        let quote: UInt8 = 0x22
        let backslash: UInt8 = 0x5C
        var scan = index
        while scan < bytes.count {
            let byte = bytes[scan]
            if byte == quote {
                let slice = UnsafeBufferPointer(rebasing: bytes[index..<scan])
                guard let string = String(validating: slice, as: UTF8.self) else {
                    throw error("invalid UTF-8 in string", at: start)
                }
                index = scan + 1
                return string
            }
            if byte == backslash { break }
            if byte < 0x20 { throw error("control character in string", at: scan) }
            scan += 1
        }
        guard scan < bytes.count else { throw error("unterminated string", at: start) }
        // Slow path with escapes.
        var out: [UInt8] = Array(UnsafeBufferPointer(rebasing: bytes[index..<scan]))
        index = scan
        while true {
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                break
            }
            if byte < 0x20 { throw error("control character in string") }
            if byte != UInt8(ascii: "\\") {
                out.append(byte)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    index += 2
                    let low = try parseHex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw error("unpaired surrogate in \\u escape")
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                out.append(contentsOf: String(Character(unicode)).utf8)
            default:
                throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'", at: index - 2)
            }
        }
        guard let string = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in string", at: start) }
        return string
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number", at: start) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number", at: start) }
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number", at: start) }
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw error("invalid number", at: start) }
        // Past Double's range it would read as infinity, which JSON cannot write back.
        guard value.isFinite else { throw error("number out of range", at: start) }
        return .number(value)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

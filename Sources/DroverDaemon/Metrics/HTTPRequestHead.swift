/// The head of an HTTP/1.x request, read as far as the metrics endpoint needs: the method and
/// the path. Strict where it matters (request line, header syntax, size), so that bytes from
/// anyone on the network get a clear 4xx and never reach more code than this.
struct HTTPRequestHead: Equatable {
    var method: String
    /// The target's path, without its query (absolute-form targets are cut to their path).
    var path: String

    enum Parsed: Equatable {
        /// The head has not ended yet: read on.
        case incomplete
        case complete(HTTPRequestHead)
        /// Not a request this server reads: answer with this status and close.
        case refused(HTTPStatus)
    }

    /// A head larger than this is refused (431): a scraper's is a few hundred bytes.
    static let maxBytes = 8192

    /// Reads the bytes received so far.
    static func parse(_ bytes: [UInt8]) -> Parsed {
        guard let end = headEnd(bytes) else { return bytes.count > maxBytes ? .refused(.headerTooLarge) : .incomplete }
        guard end <= maxBytes else { return .refused(.headerTooLarge) }
        var lines = split(bytes[0..<end])
        // Empty lines before the request line are allowed (RFC 9112, 2.2).
        while lines.first?.isEmpty == true { lines.removeFirst() }
        guard let requestLine = lines.first else { return .refused(.badRequest) }
        for line in lines.dropFirst() where !isHeaderField(line) { return .refused(.badRequest) }
        return requestHead(requestLine)
    }

    /// The index just past the head's blank line (CRLF CRLF, or bare LFs), nil before it.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        var index = 0
        // Leading blank lines are not the head's end.
        while index < bytes.count, bytes[index] == cr || bytes[index] == lf { index += 1 }
        var lineStart = index
        while index < bytes.count {
            if bytes[index] == lf {
                let line = bytes[lineStart..<index]
                if line.isEmpty || line == [cr] { return index + 1 }
                lineStart = index + 1
            }
            index += 1
        }
        return nil
    }

    /// Lines without their CRLF or LF; the blank line that ends the head is left out.
    private static func split(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        for index in head.indices where head[index] == lf {
            var line = head[start..<index]
            if line.last == cr { line = line.dropLast() }
            lines.append(line)
            start = index + 1
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    /// `METHOD SP target SP HTTP/1.x`, single spaces, nothing else.
    private static func requestHead(_ line: ArraySlice<UInt8>) -> Parsed {
        let parts = line.split(separator: space, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte), !parts[1].isEmpty,
              parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else { return .refused(.badRequest) }
        let version = Array(parts[2])
        guard version.count == 8, version.starts(with: Array("HTTP/".utf8)), isDigit(version[5]), version[6] == UInt8(ascii: "."), isDigit(version[7])
        else { return .refused(.badRequest) }
        guard version[5] == UInt8(ascii: "1") else { return .refused(.versionNotSupported) }
        guard let path = path(of: Array(parts[1])) else { return .refused(.badRequest) }
        return .complete(HTTPRequestHead(method: String(decoding: parts[0], as: UTF8.self), path: path))
    }

    /// The path of an origin-form target (`/metrics?x`) or an absolute-form one
    /// (`http://host:port/metrics`); nil for any other form.
    private static func path(of target: [UInt8]) -> String? {
        var rest = target[...]
        for scheme in ["http://", "https://"] where target.count >= scheme.utf8.count {
            if String(decoding: target.prefix(scheme.utf8.count), as: UTF8.self).lowercased() == scheme {
                rest = target.dropFirst(scheme.utf8.count)
                guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else { return "/" }
                rest = rest[slash...]
                break
            }
        }
        guard rest.first == UInt8(ascii: "/") else { return nil }
        let path = rest.prefix { $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        return String(decoding: path, as: UTF8.self)
    }

    /// `name: value`: a token before the colon, no control bytes but tab, no folded line.
    private static func isHeaderField(_ line: ArraySlice<UInt8>) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return false }
        guard line[line.startIndex..<colon].allSatisfy(isTokenByte) else { return false }
        return line[(colon + 1)...].allSatisfy { $0 == tab || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// RFC 9110's tchar.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
}

/// The answers the metrics endpoint gives.
enum HTTPStatus: Int, Equatable, CaseIterable {
    case ok = 200
    case badRequest = 400
    case notFound = 404
    case methodNotAllowed = 405
    case requestTimeout = 408
    case headerTooLarge = 431
    case serviceUnavailable = 503
    case versionNotSupported = 505

    var phrase: String {
        switch self {
        case .ok: "OK"
        case .badRequest: "Bad Request"
        case .notFound: "Not Found"
        case .methodNotAllowed: "Method Not Allowed"
        case .requestTimeout: "Request Timeout"
        case .headerTooLarge: "Request Header Fields Too Large"
        case .serviceUnavailable: "Service Unavailable"
        case .versionNotSupported: "HTTP Version Not Supported"
        }
    }
}

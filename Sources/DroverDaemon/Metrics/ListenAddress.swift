/// Where `drover serve --metrics-listen` listens: `PORT` (on 127.0.0.1), `HOST:PORT` with an
/// IPv4 address or `localhost`, or `[IPv6]:PORT`. Port 0 takes any free port (the daemon's
/// log says which). Only numeric addresses: nothing is looked up.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var isIPv6: Bool

    public init(host: String, port: Int, isIPv6: Bool = false) {
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public init(parsing text: String) throws(Invalid) {
        func invalid(_ why: String) -> Invalid {
            Invalid(description: "--metrics-listen \"\(text)\": \(why) (give PORT, HOST:PORT or [IPv6]:PORT, such as 127.0.0.1:9464)")
        }
        var host = "127.0.0.1"
        var portText = Substring(text)
        var ipv6 = false
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw invalid("an IPv6 address goes in brackets, followed by :PORT")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
            ipv6 = true
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            if host == "localhost" { host = "127.0.0.1" }
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber), portText.count <= 5, let port = Int(portText), port <= 65535 else {
            throw invalid("the port must be a number from 0 to 65535")
        }
        guard ipv6 ? host.contains(":") && host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) : Self.isIPv4(host) else {
            throw invalid(ipv6 ? "\"\(host)\" is not an IPv6 address" : "\"\(host)\" is not an IPv4 address (names are not looked up)")
        }
        self.init(host: host, port: port, isIPv6: ipv6)
    }

    private static func isIPv4(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy { $0.isASCII && $0.isNumber } && (Int(part) ?? 256) <= 255
        }
    }

    /// `127.0.0.1:9464`, `[::1]:9464`.
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

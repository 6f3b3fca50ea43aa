@testable import DroverDaemon
import Testing

/// The metrics endpoint's request reader, the only code that bytes from the network reach,
/// and the --metrics-listen address.
@Suite struct MetricsHTTPParserTests {
    func parse(_ text: String) -> HTTPRequestHead.Parsed { HTTPRequestHead.parse(Array(text.utf8)) }

    @Test func wellFormedRequestsGiveTheirMethodAndPath() {
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nAccept: */*\r\n\r\n") == .complete(.init(method: "GET", path: "/metrics")))
        #expect(parse("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n") == .complete(.init(method: "HEAD", path: "/metrics")))
        #expect(parse("GET http://127.0.0.1:9464/metrics HTTP/1.1\r\n\r\n") == .complete(.init(method: "GET", path: "/metrics")))
        #expect(parse("GET HTTP://host HTTP/1.1\r\n\r\n") == .complete(.init(method: "GET", path: "/")))
        // Empty lines before the request line, and bare LFs, are allowed.
        #expect(parse("\r\n\r\nGET /metrics HTTP/1.1\nHost: x\n\n") == .complete(.init(method: "GET", path: "/metrics")))
        #expect(parse("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc") == .complete(.init(method: "POST", path: "/metrics")))
        #expect(parse("GET /metrics HTTP/1.1\r\nX-Empty:\r\nX-Tab:\ta\tb\r\n\r\n") == .complete(.init(method: "GET", path: "/metrics")))
    }

    @Test func aHeadCutShortIsIncompleteUntilItsBlankLine() {
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        for length in 0..<request.count {
            #expect(HTTPRequestHead.parse(Array(request.prefix(length))) == .incomplete, "\(length) bytes")
        }
        #expect(HTTPRequestHead.parse(request) == .complete(.init(method: "GET", path: "/metrics")))
        // Blank lines alone are not a request yet.
        #expect(parse("\r\n\r\n\r\n") == .incomplete)
    }

    @Test func malformedHeadsAreRefused() {
        for text in [
            "garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1 \r\n\r\n",
            " GET /metrics HTTP/1.1\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n", "GET /met\u{7F}rics HTTP/1.1\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.x\r\n\r\n", "GET /metrics HTTP/11\r\n\r\n", "GET /metrics http/1.1\r\n\r\n", "GET /metrics HTTP/1.1\rX\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nX: a\u{1}b\r\n\r\n", "GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", "GET ftp://x/metrics HTTP/1.1\r\n\r\n",
            "GET /m\u{E9}trics HTTP/1.1\r\n\r\n",
        ] {
            #expect(parse(text) == .refused(.badRequest), "\(text.debugDescription)")
        }
        #expect(parse("GET /metrics HTTP/2.0\r\n\r\n") == .refused(.versionNotSupported))
        #expect(parse("GET /metrics HTTP/0.9\r\n\r\n") == .refused(.versionNotSupported))
    }

    @Test func aHeadOverTheLimitIsRefusedWhetherOrNotItEnds() {
        let filler = String(repeating: "a", count: HTTPRequestHead.maxBytes)
        #expect(parse("GET /metrics HTTP/1.1\r\nX: \(filler)") == .refused(.headerTooLarge))
        #expect(parse("GET /metrics HTTP/1.1\r\nX: \(filler)\r\n\r\n") == .refused(.headerTooLarge))
        #expect(parse(String(repeating: "\r\n", count: HTTPRequestHead.maxBytes)) == .refused(.headerTooLarge))
        // Just under it is read.
        let room = HTTPRequestHead.maxBytes - "GET /metrics HTTP/1.1\r\nX: \r\n\r\n".utf8.count
        #expect(parse("GET /metrics HTTP/1.1\r\nX: \(String(repeating: "a", count: room))\r\n\r\n") == .complete(.init(method: "GET", path: "/metrics")))
    }

    /// Hostile input: random bytes, and valid requests mutated byte by byte, cut, spliced and
    /// padded. Each parse must end (no trap), and what it accepts must hold up.
    @Test func fuzzedInputNeverTrapsAndOnlyWellFormedHeadsComplete() {
        var random = SplitMix64(seed: 0x5eed_d20e)
        let seeds = [
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: text/plain\r\n\r\n",
            "HEAD http://localhost:9464/metrics?a=b HTTP/1.0\n\n", "\r\nPOST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
        ].map { Array($0.utf8) }
        let alphabet = Array("GET /metricsHTP1.0\r\n: \t?#%\u{0}\u{7F}".utf8) + [0xFF, 0xC3, 0xA9]
        var outcomes: [String: Int] = [:]
        for round in 0..<30_000 {
            var input: [UInt8]
            switch round % 4 {
            case 0:
                input = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            case 1:
                input = (0..<Int(random.next() % 120)).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            case 2:
                input = seeds[Int(random.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + random.next() % 4) where !input.isEmpty {
                    let at = Int(random.next() % UInt64(input.count))
                    switch random.next() % 3 {
                    case 0: input[at] = UInt8(truncatingIfNeeded: random.next())
                    case 1: input.remove(at: at)
                    default: input.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: at)
                    }
                }
            default:
                let seed = seeds[Int(random.next() % UInt64(seeds.count))]
                input = Array(seed.prefix(Int(random.next() % UInt64(seed.count + 1))))
                if random.next() % 2 == 0 { input += [UInt8](repeating: UInt8(ascii: "a"), count: Int(random.next() % 12_000)) }
            }
            let parsed = HTTPRequestHead.parse(input)
            switch parsed {
            case .incomplete:
                outcomes["incomplete", default: 0] += 1
                #expect(input.count <= HTTPRequestHead.maxBytes, "an unended head past the limit must be refused")
            case .refused(let status):
                outcomes["\(status.rawValue)", default: 0] += 1
                #expect([.badRequest, .headerTooLarge, .versionNotSupported].contains(status))
            case .complete(let head):
                outcomes["complete", default: 0] += 1
                #expect(!head.method.isEmpty && head.method.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") })
                #expect(head.path.hasPrefix("/") && head.path.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
                #expect(!head.path.contains("?") && !head.path.contains("#"))
                // A complete head ends in a blank line within the limit.
                let head = Array(input.prefix(HTTPRequestHead.maxBytes))
                let blankLine = head.indices.contains { head[$0] == 0x0A && ($0 + 1 < head.count && head[$0 + 1] == 0x0A
                    || $0 + 2 < head.count && head[$0 + 1] == 0x0D && head[$0 + 2] == 0x0A) }
                #expect(blankLine)
            }
        }
        // The fuzzing reached every kind of answer, not only the first check.
        for kind in ["incomplete", "complete", "400", "431", "505"] { #expect(outcomes[kind, default: 0] > 0, "no input gave \(kind): \(outcomes)") }
    }

    @Test func listenAddresses() throws {
        #expect(try ListenAddress(parsing: "9464") == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(try ListenAddress(parsing: "127.0.0.1:0") == ListenAddress(host: "127.0.0.1", port: 0))
        #expect(try ListenAddress(parsing: "localhost:80") == ListenAddress(host: "127.0.0.1", port: 80))
        #expect(try ListenAddress(parsing: "0.0.0.0:9464") == ListenAddress(host: "0.0.0.0", port: 9464))
        #expect(try ListenAddress(parsing: "[::1]:9464") == ListenAddress(host: "::1", port: 9464, isIPv6: true))
        #expect(try ListenAddress(parsing: "[::1]:9464").description == "[::1]:9464")
        for bad in ["", ":", "host:9464", "1.2.3:9464", "1.2.3.256:1", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:", "[::1]9464", "[::1", "[xyz]:1", "९४६४"] {
            #expect(throws: ListenAddress.Invalid.self, "\(bad)") { try ListenAddress(parsing: bad) }
        }
    }
}

/// A small seeded generator, so that a failing fuzz round can be found again.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

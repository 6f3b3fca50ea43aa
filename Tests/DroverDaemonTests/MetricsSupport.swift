import DroverCore
import DroverTestSupport
import DroverWire
import Glibc

/// What the metrics tests need around the daemon: a plain TCP client, Prometheus' own
/// parsers (promtool, and the Python client's) and a real Prometheus server.

/// A finished program's exit status and output.
struct ProgramResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a program (looked up on PATH) with stdin from `input`; its output captured.
func runProgram(_ arguments: [String], input: String? = nil, in folder: String) throws -> ProgramResult {
    let out = folder + "/.program-out"
    let err = folder + "/.program-err"
    var inputFD: Int32?
    if let input { inputFD = open(input, O_RDONLY | O_CLOEXEC) }
    defer { if let inputFD { close(inputFD) } }
    let pid = try spawnChild(["/usr/bin/env"] + arguments, input: inputFD, output: .file(out), stderr: err, in: folder)
    let status = waitForExit(pid)
    return ProgramResult(status: status, stdout: readText(out), stderr: readText(err))
}

/// A metrics text as Prometheus reads it: checked by `promtool check metrics` (format and
/// naming lint), and its samples as parsed by the Python client (prometheus_client).
struct ScrapedMetrics {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    let text: String
    let samples: [Sample]

    static let parser = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        samples = []
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):
            for sample in family.samples:
                samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
        print(json.dumps(samples))
        """

    init(_ text: String, folder: String) throws {
        self.text = text
        let file = folder + "/metrics-\(UInt32.random(in: 0 ... .max)).txt"
        try FileSystem.writeFile(file, Array(text.utf8))
        defer { unlink(file) }
        let lint = try runProgram(["promtool", "check", "metrics"], input: file, in: folder)
        guard lint.status == 0 else {
            throw TestFailure("promtool check metrics exited \(lint.status): \(lint.stdout)\(lint.stderr)\n\(text)")
        }
        let parsed = try runProgram(["python3", "-c", Self.parser, file], in: folder)
        guard parsed.status == 0 else {
            throw TestFailure("prometheus_client could not parse the metrics (pip install prometheus_client): \(parsed.stderr)\n\(text)")
        }
        samples = try (JSONParser.parse(Array(parsed.stdout.utf8)).value.arrayValue ?? []).map { item in
            guard let object = item.objectValue, let name = object["name"]?.stringValue, let value = object["value"]?.numberValue else {
                throw TestFailure("unexpected parser output: \(parsed.stdout)")
            }
            var labels: [String: String] = [:]
            for (key, label) in (object["labels"]?.objectValue ?? [:]).members { labels[key] = label.stringValue }
            return Sample(name: name, labels: labels, value: value)
        }
    }

    /// The value of the sample with this name and exactly these labels.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// The samples of one name, as (labels, value).
    func series(_ name: String) -> [[String: String]: Double] {
        Dictionary(samples.filter { $0.name == name }.map { ($0.labels, $0.value) }, uniquingKeysWith: { $1 })
    }
}

/// One HTTP exchange over a fresh TCP connection: sends `request` as is, reads until the
/// server closes (or `timeoutMs` passes).
struct RawHTTP {
    let status: Int?
    let head: String
    let body: String
    /// Whether the server closed the connection (rather than the wait running out).
    let closed: Bool
    let elapsedMs: Int

    static func exchange(port: Int, _ request: [UInt8], timeoutMs: Int = 10_000) throws -> RawHTTP {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("cannot connect to 127.0.0.1:\(port): errno \(errno)") }
        let started = Clock.monotonicNs()
        var offset = 0
        while offset < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may refuse before it has read everything
            offset += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var closed = false
        while Int((Clock.monotonicNs() - started) / 1_000_000) < timeoutMs {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 {
                closed = true
                break
            }
            received += buffer.prefix(n)
        }
        let text = String(decoding: received, as: UTF8.self)
        let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
        let head = parts.first.map(String.init) ?? ""
        let statusWord = head.split(separator: " ").dropFirst().first
        return RawHTTP(status: statusWord.flatMap { Int($0) }, head: head, body: parts.count > 1 ? String(parts[1]) : "", closed: closed,
                       elapsedMs: Int((Clock.monotonicNs() - started) / 1_000_000))
    }

    static func get(port: Int, _ path: String) throws -> RawHTTP {
        try exchange(port: port, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: drover-tests\r\nConnection: close\r\n\r\n".utf8))
    }

    func header(_ name: String) -> String? {
        for line in head.split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() { return parts[1].trimmingCharacters(in: " ") }
        }
        return nil
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}

/// A loopback port no one listens on now (the kernel's pick for port 0).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("cannot bind a loopback socket: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// `drover serve --metrics-listen 127.0.0.1:0` for a fixture's folder, started by the test
/// (an autostarted daemon has no metrics listener); the port is read off its log.
final class MetricsDaemon {
    let pid: pid_t
    let port: Int
    let log: String

    init(_ d: DaemonFixture, listen: String = "127.0.0.1:0") throws {
        let log = d.folder + "/serve.log"
        self.log = log
        pid = try startDrover(["serve", "--metrics-listen", listen, "--state-dir", d.state, "--config", d.config], output: log)
        var found: Int?
        eventually(withinMs: 10_000) {
            let text = readText(log + ".err")
            guard let range = text.firstRange(of: "metrics at http://127.0.0.1:") else { return false }
            found = Int(text[range.upperBound...].prefix { $0.isNumber })
            return found != nil
        }
        guard let found else {
            kill(pid, SIGKILL)
            _ = waitForExit(pid)
            throw TestFailure("drover serve did not say where its metrics are: \(readText(log + ".err"))")
        }
        port = found
    }

    /// Shuts the daemon down through the CLI and reaps it; returns its exit status.
    func stop(_ d: DaemonFixture) throws -> Int32 {
        _ = try d.run(["shutdown", "--no-autostart"])
        return waitForExit(pid)
    }
}

/// A real Prometheus server (Debian's `prometheus`) scraping one target every second, with
/// its storage in a temporary folder and its web API on a free loopback port.
final class PrometheusServer {
    let pid: pid_t
    let port: Int
    let folder: String

    init(scraping target: String, folder: String) throws {
        self.folder = folder
        let config = folder + "/prometheus.yml"
        try FileSystem.writeFile(config, Array("""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: drover
                static_configs:
                  - targets: ["\(target)"]

            """.utf8))
        let places: [String] = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        guard let binary = places.first(where: { access($0, X_OK) == 0 }) else {
            throw TestFailure("no prometheus server: install Debian's prometheus package (apt-get install prometheus)")
        }
        // The port is free when picked; if another process takes it first, the server exits and
        // another port is tried.
        var lastError = ""
        for attempt in 0..<3 {
            let port = try freeLoopbackPort()
            let pid = try spawnChild([binary, "--config.file=\(config)", "--storage.tsdb.path=\(folder)/data-\(attempt)",
                                      "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"],
                                     output: .file(folder + "/prometheus.out"), stderr: folder + "/prometheus.err")
            var exited = false
            eventually(withinMs: 30_000) {
                if let ready = try? RawHTTP.get(port: port, "/-/ready"), ready.status == 200 { return true }
                exited = waitpid(pid, nil, WNOHANG) == pid
                return exited
            }
            if !exited && waitpid(pid, nil, WNOHANG) == 0 {
                self.pid = pid
                self.port = port
                return
            }
            lastError = readText(folder + "/prometheus.err")
            if !exited {
                kill(pid, SIGKILL)
                waitpid(pid, nil, 0)
            }
        }
        throw TestFailure("prometheus did not start: \(lastError)")
    }

    /// An instant query's vector as (labels, value).
    func query(_ expression: String) throws -> [([String: String], Double)] {
        let encoded = expression.utf8.map { byte -> String in
            let c = Character(UnicodeScalar(byte))
            if c.isLetter && c.isASCII || c.isNumber && c.isASCII || "_-.".contains(c) { return String(c) }
            return "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
        }.joined()
        let answer = try RawHTTP.get(port: port, "/api/v1/query?query=" + encoded)
        guard answer.status == 200, let object = try JSONParser.parse(Array(answer.body.utf8)).value.objectValue,
              object["status"]?.stringValue == "success", let result = object["data"]?.objectValue?["result"]?.arrayValue
        else { throw TestFailure("query \(expression) failed: \(answer.head)\n\(answer.body)") }
        return result.compactMap { item -> ([String: String], Double)? in
            guard let object = item.objectValue, let value = object["value"]?.arrayValue?.last?.stringValue.flatMap(Double.init) else { return nil }
            var labels: [String: String] = [:]
            for (key, label) in (object["metric"]?.objectValue ?? [:]).members { labels[key] = label.stringValue }
            return (labels, value)
        }
    }

    func stop() {
        kill(pid, SIGTERM)
        if !eventually(withinMs: 10_000, { waitpid(pid, nil, WNOHANG) == pid }) {
            kill(pid, SIGKILL)
            waitpid(pid, nil, 0)
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

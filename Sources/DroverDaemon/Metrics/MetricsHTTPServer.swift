import CLibUV
import DroverCore
import Glibc

/// `GET /metrics` over HTTP/1.1 on a TCP listener of the daemon's own loop (`drover serve
/// --metrics-listen`): one request per connection, answered and closed. Whoever can reach the
/// port cannot hold the daemon: a request head is at most 8 KiB and must arrive within 5 s,
/// at most 32 connections are open at once (more get 503), and anything but a well-formed
/// GET or HEAD of /metrics gets a 4xx.
final class MetricsHTTPServer {
    static let requestDeadlineMs = 5_000
    /// After the answer, how long unread input is drained before the close: closing a socket
    /// with unread bytes resets it, which can cost the client the answer.
    static let lingerMs = 1_000
    static let maxConnections = 32

    private let loop: EventLoop
    private let listener: UnsafeMutablePointer<uv_tcp_t>
    private let render: () -> [UInt8]
    /// Where it listens, with the port the kernel chose for port 0.
    private(set) var address: ListenAddress
    private var openConnections = 0
    private var closed = false

    init(loop: EventLoop, address: ListenAddress, render: @escaping () -> [UInt8]) throws(DaemonServer.StartError) {
        self.loop = loop
        self.address = address
        self.render = render
        listener = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.raw, listener)
        listener.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var storage = sockaddr_storage()
        let parsed = withUnsafeMutableBytes(of: &storage) { raw in
            address.isIPv6
                ? uv_ip6_addr(address.host, Int32(address.port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self))
                : uv_ip4_addr(address.host, Int32(address.port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self))
        }
        func failed(_ code: Int32) -> DaemonServer.StartError {
            uv_close(asHandle(listener)) { UnsafeMutableRawPointer($0!).deallocate() }
            return .socket("cannot listen for metrics on \(address): \(String(cString: uv_strerror(code)))")
        }
        guard parsed == 0 else { throw failed(parsed) }
        let bound = withUnsafeBytes(of: &storage) { raw in uv_tcp_bind(listener, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), 0) }
        guard bound == 0 else { throw failed(bound) }
        let listening = uv_listen(asStream(listener), 64) { server, status in
            guard status == 0 else { return }
            Unmanaged<MetricsHTTPServer>.fromOpaque(server!.pointee.data).takeUnretainedValue().accept()
        }
        guard listening == 0 else { throw failed(listening) }
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutableBytes(of: &storage) { raw in
            uv_tcp_getsockname(listener, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        if named == 0 {
            // sin_port and sin6_port sit at the same offset.
            self.address.port = withUnsafeBytes(of: &storage) { raw in Int(UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))) }
        }
    }

    /// Stops listening; connections being answered finish on their own.
    func close() {
        guard !closed else { return }
        closed = true
        uv_close(asHandle(listener)) { UnsafeMutableRawPointer($0!).deallocate() }
    }

    private func accept() {
        let client = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.raw, client)
        guard uv_accept(asStream(listener), asStream(client)) == 0 else {
            uv_close(asHandle(client)) { UnsafeMutableRawPointer($0!).deallocate() }
            return
        }
        let full = openConnections >= Self.maxConnections
        openConnections += 1
        let connection = MetricsHTTPConnection(handle: client, loop: loop) { [weak self] in self?.openConnections -= 1 }
        connection.onRequest = { [unowned self, unowned connection] head in self.answer(head, on: connection) }
        connection.start()
        if full { connection.respond(.serviceUnavailable, body: "too many connections open; try again\n") }
    }

    private func answer(_ head: HTTPRequestHead, on connection: MetricsHTTPConnection) {
        guard head.path == "/metrics" else {
            return connection.respond(.notFound, body: "not found: drover serves its metrics at /metrics\n")
        }
        guard head.method == "GET" || head.method == "HEAD" else {
            return connection.respond(.methodNotAllowed, body: "\(head.method) is not allowed: use GET\n", extraHeaders: "Allow: GET, HEAD\r\n")
        }
        connection.respond(.ok, body: render(), contentType: "text/plain; version=0.0.4; charset=utf-8", headOnly: head.method == "HEAD")
    }
}

/// One client of the metrics endpoint: its request head is read, answered once, and the
/// connection closed.
final class MetricsHTTPConnection {
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private var received: [UInt8] = []
    private var timer: LoopTimer?
    private var answered = false
    private var closing = false
    private var selfReference: Unmanaged<MetricsHTTPConnection>?
    private let whenClosed: () -> Void
    var onRequest: (HTTPRequestHead) -> Void = { _ in }

    init(handle: UnsafeMutablePointer<uv_tcp_t>, loop: EventLoop, whenClosed: @escaping () -> Void) {
        self.handle = handle
        self.whenClosed = whenClosed
        timer = LoopTimer(loop: loop)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        selfReference = Unmanaged.passRetained(self)
    }

    func start() {
        timer?.start(after: MetricsHTTPServer.requestDeadlineMs) { [unowned self] in
            self.respond(.requestTimeout, body: "no whole request within \(MetricsHTTPServer.requestDeadlineMs / 1000) s\n")
        }
        let reading = uv_read_start(asStream(handle), { _, suggested, buffer in
            let size = min(suggested, 16 * 1024)
            buffer!.pointee = uv_buf_init(UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16).assumingMemoryBound(to: CChar.self), UInt32(size))
        }, { stream, count, buffer in
            let connection = Unmanaged<MetricsHTTPConnection>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            let base = buffer.flatMap { UnsafeMutableRawPointer($0.pointee.base) }
            defer { base?.deallocate() }
            connection.read(count: count, base: base.map { UnsafeRawPointer($0) })
        })
        if reading != 0 { close() }
    }

    private func read(count: Int, base: UnsafeRawPointer?) {
        guard count >= 0 else { return close() }  // EOF or an error: the client is gone
        guard !answered, let base, count > 0 else { return }  // after the answer, input is drained
        received.append(contentsOf: UnsafeRawBufferPointer(start: base, count: count))
        switch HTTPRequestHead.parse(received) {
        case .incomplete: break
        case .refused(let status): respond(status, body: "bad request: \(status.phrase)\n")
        case .complete(let head):
            answered = true
            timer?.stop()
            onRequest(head)
        }
    }

    func respond(_ status: HTTPStatus, body: String, extraHeaders: String = "") {
        respond(status, body: Array(body.utf8), contentType: "text/plain; charset=utf-8", extraHeaders: extraHeaders)
    }

    /// Writes the answer, then half-closes and drains what the client still sends, briefly.
    func respond(_ status: HTTPStatus, body: [UInt8], contentType: String, extraHeaders: String = "", headOnly: Bool = false) {
        guard !closing else { return }
        answered = true
        closing = true
        onRequest = { _ in }
        let head = "HTTP/1.1 \(status.rawValue) \(status.phrase)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
            + extraHeaders + "Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if !headOnly { bytes += body }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<uv_write_t>.stride + bytes.count, alignment: 16)
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        let payload = memory + MemoryLayout<uv_write_t>.stride
        bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, asStream(handle), &buffer, 1) { request, status in
            let connection = Unmanaged<MetricsHTTPConnection>.fromOpaque(request!.pointee.handle.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(request!).deallocate()
            if status == 0 { connection.linger() } else { connection.close() }
        }
        if rc != 0 {
            memory.deallocate()
            close()
        }
    }

    /// The answer is out: send FIN, then close at EOF or after `lingerMs`, whichever is first.
    private func linger() {
        timer?.start(after: MetricsHTTPServer.lingerMs) { [unowned self] in self.close() }
        let shutdown = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        if uv_shutdown(shutdown, asStream(handle), { request, _ in UnsafeMutableRawPointer(request!).deallocate() }) != 0 {
            shutdown.deallocate()
            close()
        }
    }

    private func close() {
        guard selfReference != nil, uv_is_closing(asHandle(handle)) == 0 else { return }
        timer?.stop()
        timer = nil
        onRequest = { _ in }
        whenClosed()
        uv_close(asHandle(handle)) { handle in
            let connection = Unmanaged<MetricsHTTPConnection>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            UnsafeMutableRawPointer(handle!).deallocate()
            connection.selfReference?.release()
            connection.selfReference = nil
        }
    }
}

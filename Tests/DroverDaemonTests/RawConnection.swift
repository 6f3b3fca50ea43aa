import DroverTestSupport
import DroverWire
import Glibc

/// A control connection driven by hand, to send what no client would and to watch what
/// the daemon does about it.
final class RawConnection {
    let fd: Int32
    private var decoder = FrameDecoder(maxFrameBytes: 1 << 30)

    init(_ socketPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in Array(socketPath.utf8).enumerated() { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw TestFailure("cannot connect to \(socketPath): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func send(frame: JSONObject) { send(FrameEncoder.encode(frame)) }

    /// A frame with this exact JSON text as its payload.
    func send(json: String) {
        let payload = Array(json.utf8)
        send(FrameEncoder.header(length: UInt32(payload.count)) + payload)
    }

    enum Received {
        case frame(JSONObject)
        case closed
        case nothing
    }

    /// The next frame, the daemon's close, or nothing within `timeoutMs`.
    func next(timeoutMs: Int) -> Received {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var waited = 0
        while true {
            if let frame = try? decoder.next() { return .frame(frame.object) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 50)
            if ready == 0 {
                waited += 50
                if waited >= timeoutMs { return .nothing }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .closed }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    /// Every frame until the daemon closes the connection (nil if it did not within `timeoutMs`).
    func framesUntilClosed(timeoutMs: Int) -> [JSONObject]? {
        var frames: [JSONObject] = []
        while true {
            switch next(timeoutMs: timeoutMs) {
            case .frame(let frame): frames.append(frame)
            case .closed: return frames
            case .nothing: return nil
            }
        }
    }
}

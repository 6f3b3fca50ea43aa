import Foundation
import Glibc
import Logging
import MCP

/// MCP's stdio framing (one JSON-RPC message per line) over two file descriptors.
///
/// The SDK's own StdioTransport switches the inherited stdin and stdout to O_NONBLOCK,
/// which changes them for every process sharing them (the client's terminal or pipes
/// included), and then polls every 10 ms. This one blocks a dedicated thread in read(2),
/// so it costs nothing while the client is quiet and sees a message the moment it arrives.
public actor LineTransport: Transport {
    public nonisolated let logger: Logger
    private let input: Int32
    private let output: Int32
    private let messages: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    private var reader: Thread?

    public init(input: Int32 = 0, output: Int32 = 1, logger: Logger = Logger(label: "drover.mcp", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.input = input
        self.output = output
        self.logger = logger
        (messages, continuation) = AsyncThrowingStream.makeStream()
    }

    public func connect() async throws {
        guard reader == nil else { return }
        let input = self.input
        let continuation = self.continuation
        let thread = Thread {
            Self.readLines(from: input, into: continuation)
        }
        thread.name = "drover-mcp-stdin"
        thread.start()
        reader = thread
    }

    public func disconnect() async {
        continuation.finish()
    }

    public func send(_ data: Data) async throws {
        var bytes = [UInt8](data)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw MCPError.transportError(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO))
            }
            offset += written
        }
    }

    public func receive() -> AsyncThrowingStream<Data, any Error> {
        messages
    }

    /// Reads until end of input, yielding each non-empty line.
    private static func readLines(from fd: Int32, into continuation: AsyncThrowingStream<Data, any Error>.Continuation) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            var start = 0
            while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                var line = pending[start..<newline]
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                if !line.isEmpty { continuation.yield(Data(line)) }
                start = newline + 1
            }
            pending.removeFirst(start)
        }
        if !pending.isEmpty { continuation.yield(Data(pending)) }
        continuation.finish()
    }
}

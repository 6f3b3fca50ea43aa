import DroverCore
import DroverDaemon
import DroverWire
import Foundation

/// The daemon, seen from async code. The control client blocks in plain system calls, so
/// each call runs on a thread of its own: a `background_output` that waits ten minutes
/// then holds one idle thread, never one of the few threads Swift's tasks share.
public struct DaemonGateway: Sendable {
    public let state: StateFolder
    public let autostart: Bool
    /// Arguments for a `drover serve` started on demand (such as `--config`).
    public let serveArguments: [String]

    public init(state: StateFolder, autostart: Bool, serveArguments: [String]) {
        self.state = state
        self.autostart = autostart
        self.serveArguments = serveArguments
    }

    /// One request, one answer; an "error" answer throws with the daemon's message.
    public func call<Call: ControlCall>(_ call: Call) async throws -> Call.Reply {
        try await onThread { [self] in
            let client = try ControlClient.connect(state: state, autostart: autostart, serveArguments: serveArguments)
            return try client.call(call)
        }
    }

    /// A streaming request: `handle` sees every frame, on the stream's own thread, until
    /// it returns true or the daemon closes the connection. Returns once the stream has
    /// begun (its first frame handled), so nothing that happens after that is missed.
    public func stream<Call: ControlCall>(_ call: Call, handle: @escaping @Sendable (Call.Reply) -> Bool, ended: @escaping @Sendable () -> Void) async throws {
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            let thread = Thread { [self] in
                var resumed = false
                do {
                    let client = try ControlClient.connect(state: state, autostart: autostart, serveArguments: serveArguments)
                    try client.send(call)
                    while let frame = try client.next(answering: Call.self) {
                        let done = handle(frame)
                        if !resumed {
                            resumed = true
                            started.resume()
                        }
                        if done { break }
                    }
                } catch {
                    if !resumed {
                        resumed = true
                        started.resume(throwing: error)
                    }
                }
                if !resumed { started.resume(throwing: ClientError(message: "the daemon closed the connection", exitCode: 5)) }
                ended()
            }
            thread.name = "drover-mcp-stream"
            thread.start()
        }
    }

    private func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = "drover-mcp-call"
            thread.start()
        }
    }
}

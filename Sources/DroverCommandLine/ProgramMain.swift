import ArgumentParser
import DroverCore
import Glibc

extension ParsableCommand {
    /// The start every drover program shares (drover, drover-mcp): a clean signal mask, log
    /// lines on stderr, SIGPIPE ignored (a daemon or client that hangs up must give an error,
    /// not kill this process); then the command `parse` gives is run. Usage errors exit 2
    /// (SPEC section 7; swift-argument-parser's own is 64); other errors as it maps them.
    public static func runProgram(parse: () throws -> ParsableCommand) {
        ProcessSetup.unblockSignals()
        DroverLog.bootstrap()
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parse()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                let bytes = Array((fullMessage(for: error) + "\n").utf8)
                var offset = 0
                while offset < bytes.count {
                    let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    offset += n
                }
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

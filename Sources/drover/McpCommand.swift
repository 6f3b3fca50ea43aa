import ArgumentParser
import DroverCore
import Glibc

/// `drover mcp`: hands the process to `drover-mcp`, the MCP server, found beside this
/// executable. The server is a program of its own because the MCP SDK needs Foundation,
/// which would make every other command start several times slower.
struct McpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the MCP tools delegate_task, background_output and background_cancel over stdio.",
        discussion: "Runs drover-mcp, which sits beside drover; `drover mcp --help` shows its options."
    )

    /// Everything after `mcp`, `--help` included: drover-mcp parses it.
    @Argument(parsing: .captureForPassthrough, help: .hidden)
    var arguments: [String] = []

    static let serverName = "drover-mcp"

    func run() throws {
        let server = FileSystem.executableDirectory() + "/" + Self.serverName
        guard FileSystem.isExecutableFile(server) else {
            Terminal.error("drover mcp: \(server) is missing; the MCP server is that program, installed beside drover (scripts/install.sh installs both)")
            throw ExitCode(2)
        }
        // Every descriptor above 2 is close-on-exec, so the server inherits stdin, stdout
        // and stderr only.
        let failure = execute(server, arguments: [server] + arguments)
        Terminal.error("drover mcp: cannot run \(server): \(String(cString: strerror(failure)))")
        throw ExitCode(2)
    }

    /// execv: returns only when it fails, with its errno.
    private func execute(_ path: String, arguments: [String]) -> Int32 {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        execv(path, argv)
        return errno
    }
}

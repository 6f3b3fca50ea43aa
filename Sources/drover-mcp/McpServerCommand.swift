import ArgumentParser
import DroverCommandLine
import DroverCore
import DroverMCP
import DroverWire
import Foundation

/// The MCP server behind `drover mcp` (which execs this program with its arguments): the
/// tools delegate_task, background_output and background_cancel over stdio, a client of the
/// daemon. A program of its own because the MCP SDK needs Foundation, which `drover` does not
/// load.
@main
struct McpServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover mcp",
        abstract: "Serve the MCP tools delegate_task, background_output and background_cancel over stdio.",
        discussion: """
            A client of the daemon (started when needed, like every client command). Register it with an MCP client \
            as the command `drover mcp`; see the README. `--print-config claude` prints the server entry for Claude \
            Code's .mcp.json (or `claude --mcp-config FILE`) with this command's --state-dir and --config.
            """,
        version: DroverVersion.text
    )

    @Option(name: .customLong("state-dir"), help: "State folder (default: $DROVER_HOME, $XDG_STATE_HOME/drover, ~/.local/state/drover).")
    var stateDirectory: String?

    @Option(name: .customLong("config"), help: "Config file (default: $DROVER_CONFIG, then $XDG_CONFIG_HOME/drover/config.jsonc).")
    var configFile: String?

    /// Taken, as by every drover command; the server's output is MCP whatever it says.
    @Flag(name: .customLong("json"), help: .hidden)
    var json = false

    @Flag(name: .customLong("no-autostart"), help: "Fail (exit 5) instead of starting a daemon when none answers.")
    var noAutostart = false

    @Option(name: .customLong("print-config"), help: "Print the MCP server entry for this client (claude) and exit.")
    var printConfig: String?

    func validate() throws {
        if let printConfig, printConfig != "claude" {
            throw ValidationError("--print-config: \"\(printConfig)\" is not a client drover knows (claude)")
        }
    }

    static func main() {
        runProgram { try parseAsRoot() }
    }

    func run() throws {
        if printConfig != nil {
            // The command a client runs is `drover mcp`, drover being beside this program.
            var arguments: [JSONValue] = ["mcp"]
            if let stateDirectory { arguments += ["--state-dir", .string(FileSystem.absolute(stateDirectory))] }
            if let configFile { arguments += ["--config", .string(FileSystem.absolute(configFile))] }
            let drover = FileSystem.executableDirectory() + "/drover"
            let server: JSONObject = ["command": .string(drover), "args": .array(arguments)]
            print(JSONWriter.string(["mcpServers": ["drover": .object(server)]]))
            return
        }
        // The agent list in the tool description comes from the same config the daemon
        // started on demand gets.
        let config: DroverConfig
        do {
            config = try ConfigLoader.load(explicitPath: configFile, environment: ProcessEnvironment.current())
        } catch {
            printError("drover: config error: \(error)")
            throw ExitCode(2)
        }
        for warning in config.warnings { printError("drover: warning: \(warning)") }
        var serve: [String] = []
        if let configFile { serve += ["--config", FileSystem.absolute(configFile)] }
        let state = StateFolder(explicit: stateDirectory, environment: ProcessEnvironment.current())
        let gateway = DaemonGateway(state: state, autostart: !noAutostart, serveArguments: serve)
        let server = DelegationServer(gateway: gateway, agents: Array(config.agents.values), version: DroverVersion.text,
                                      configFile: configFile.map(FileSystem.absolute))
        Task {
            do {
                try await server.run(transport: LineTransport())
                Foundation.exit(0)
            } catch {
                printError("drover mcp: \(error)")
                Foundation.exit(1)
            }
        }
        dispatchMain()
    }
}

/// One line on stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

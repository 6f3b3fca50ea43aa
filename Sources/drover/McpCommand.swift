import ArgumentParser
import DroverCore
import DroverDaemon
import DroverMCP
import DroverWire
import Foundation

struct McpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the MCP tools delegate_task, background_output and background_cancel over stdio.",
        discussion: """
            A client of the daemon (started when needed, like every client command). Register it with an MCP client \
            as the command `drover mcp`; see the README. `--print-config claude` prints the server entry for Claude \
            Code's .mcp.json (or `claude --mcp-config FILE`) with this command's --state-dir and --config.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .customLong("print-config"), help: "Print the MCP server entry for this client (claude) and exit.")
    var printConfig: String?

    func validate() throws {
        if let printConfig, printConfig != "claude" {
            throw ValidationError("--print-config: \"\(printConfig)\" is not a client drover knows (claude)")
        }
    }

    func run() throws {
        if printConfig != nil {
            var arguments: [JSONValue] = ["mcp"]
            if let state = client.common.stateDirectory { arguments += ["--state-dir", .string(FileSystem.absolute(state))] }
            if let config = client.common.configFile { arguments += ["--config", .string(FileSystem.absolute(config))] }
            let server: JSONObject = ["command": .string(FileSystem.executablePath()), "args": .array(arguments)]
            Terminal.out(JSONWriter.string(["mcpServers": ["drover": .object(server)]]))
            return
        }
        // The agent list in the tool description comes from the same config the daemon
        // started on demand gets.
        let config = try client.common.loadConfig()
        var serve: [String] = []
        if let file = client.common.configFile { serve += ["--config", FileSystem.absolute(file)] }
        let gateway = DaemonGateway(state: client.state, autostart: !client.noAutostart, serveArguments: serve)
        let server = DelegationServer(gateway: gateway, agents: Array(config.agents.values), version: Drover.version,
                                      configFile: client.common.configFile.map(FileSystem.absolute))
        Task {
            do {
                try await server.run(transport: LineTransport())
                Foundation.exit(0)
            } catch {
                Terminal.error("drover mcp: \(error)")
                Foundation.exit(1)
            }
        }
        dispatchMain()
    }
}

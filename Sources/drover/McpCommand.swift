import ArgumentParser
import DroverCore
import DroverDaemon
import DroverMCP
import Foundation

struct McpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the MCP tools delegate_task, background_output and background_cancel over stdio.",
        discussion: "A client of the daemon (started when needed, like every client command). Register it with an MCP client as the command `drover mcp`; see the README."
    )

    @OptionGroup var client: ClientOptions

    func run() throws {
        // The agent list in the tool description comes from the same config the daemon
        // started on demand gets.
        let config = try client.common.loadConfig()
        var serve: [String] = []
        if let file = client.common.configFile { serve += ["--config", FileSystem.absolute(file)] }
        let gateway = DaemonGateway(state: client.state, autostart: !client.noAutostart, serveArguments: serve)
        let server = DelegationServer(gateway: gateway, agents: Array(config.agents.values), version: Drover.version)
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

import ArgumentParser
import DroverCommandLine
import DroverCore
import DroverDaemon
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
            as the command `drover mcp`; see the README. `--print-config CLIENT` prints the server entry for that \
            client with this command's --state-dir and --config: claude (Claude Code's .mcp.json, or `claude \
            --mcp-config FILE`), codex (a table of ~/.codex/config.toml), opencode (opencode.json's "mcp" entry). \
            Where it goes is said on stderr.
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

    @Option(name: .customLong("print-config"), help: "Print the MCP server entry for this client (claude, codex, opencode) and exit.")
    var printConfig: String?

    func validate() throws {
        if let printConfig, McpClient(rawValue: printConfig) == nil {
            let known = McpClient.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--print-config: \"\(printConfig)\" is not a client drover knows (\(known))")
        }
    }

    static func main() {
        runProgram { try parseAsRoot() }
    }

    func run() throws {
        if let printConfig, let client = McpClient(rawValue: printConfig) {
            printSnippet(for: client)
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

extension McpServerCommand {
    /// The client's entry on stdout (one document of its format, to redirect into its file);
    /// on stderr where it goes and, for Claude Code, the hooks for its settings.
    func printSnippet(for client: McpClient) {
        // The command a client runs is `drover mcp`, drover being beside this program.
        let drover = FileSystem.executableDirectory() + "/drover"
        var options: [String] = []
        if let stateDirectory { options += ["--state-dir", FileSystem.absolute(stateDirectory)] }
        if let configFile { options += ["--config", FileSystem.absolute(configFile)] }
        let hookWords = [drover, "hook", "claude"] + options
        let snippets = McpClientSnippets.snippets(for: client, program: drover, serverArguments: ["mcp"] + options,
                                                  hookCommand: shellLine(hookWords))
        let entry = snippets[0]
        print(entry.text, terminator: entry.text.hasSuffix("\n") ? "" : "\n")
        var guidance = "drover mcp: this goes in \(entry.destination)"
        if client == .claude {
            guidance += "; or run: claude mcp add --scope project drover -- \(shellLine([drover, "mcp"] + options))"
            // The hooks go in another file: on stderr, so that stdout stays one document.
            guidance += "\ndrover mcp: for notices of ended tasks, add these hooks to .claude/settings.json "
                + "(`\(shellLine(hookWords + ["--print-settings"]))` prints them too):\n" + snippets[1].text
        }
        printError(guidance)
    }
}

/// One line on stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

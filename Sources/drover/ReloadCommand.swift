import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// `drover reload`: the daemon takes the config this command names, without stopping.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the daemon load the config this command names (--config, $DROVER_CONFIG, ~/.config/drover/config.jsonc).",
        discussion: """
            With no config found that way, the daemon reads its own file again (as on SIGHUP). Running tasks keep the \
            settings they started with; new tasks get the new agents and timers, and new limits apply from the next \
            slot granted. A config that does not load is refused (exit 2) and the daemon keeps the one it has. Never \
            starts a daemon (exit 5 when none runs).
            """
    )

    @OptionGroup var common: CommonOptions

    func run() throws {
        let environment = ProcessEnvironment.current()
        // Refused here first, with the file's line, rather than after a round trip.
        _ = try common.loadConfig()
        let named = ConfigIdentity.locate(explicitPath: common.configFile, environment: environment).map(FileSystem.absolute)
        let state = StateFolder(explicit: common.stateDirectory, environment: environment)
        let answer: ReloadReply
        do {
            answer = try ControlClient.connect(state: state, autostart: false).call(ReloadRequest(config: named))
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
        if common.json {
            Terminal.out(JSONWriter.string(["config": answer.config.map(JSONValue.string) ?? .null]))
        } else {
            Terminal.out("The daemon for \(state.path) now runs with \(answer.config ?? "the built-in defaults").")
        }
    }
}

import ArgumentParser
import DroverCommandLine
import DroverCore
import Glibc

@main
struct Drover: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover",
        abstract: "Supervise background agent tasks: many agent sessions at once, under concurrency limits, with every result in files.",
        version: Drover.version,
        subcommands: [
            DemoCommand.self, RunCommand.self, ServeCommand.self, LaunchCommand.self, StatusCommand.self, OutputCommand.self,
            CancelCommand.self, ContinueCommand.self, RestartCommand.self, WaitCommand.self, LogsCommand.self, EventsCommand.self, ShutdownCommand.self,
            ReloadCommand.self,
            DiffCommand.self, ApplyCommand.self, DiscardCommand.self, CleanCommand.self,
            McpCommand.self, StatsCommand.self, UsageCommand.self, MetricsCommand.self, TopCommand.self,
            HookCommand.self,
            InitCommand.self, DoctorCommand.self,
        ]
    )

    static let version = DroverVersion.text

    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if HotCommands.isVersionRequest(arguments) { return Terminal.out(version) }
        runProgram { try HotCommands.parse(arguments) ?? parseAsRoot() }
    }
}

/// Options every command takes after its name.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "State folder (default: $DROVER_HOME, $XDG_STATE_HOME/drover, ~/.local/state/drover).")
    var stateDirectory: String?

    @Option(name: .customLong("config"), help: "Config file (default: $DROVER_CONFIG, else $XDG_CONFIG_HOME/drover/config.jsonc, ~/.config/drover/config.jsonc when XDG_CONFIG_HOME is unset; no file: built-in defaults).")
    var configFile: String?

    @Flag(name: .customLong("json"), help: "Machine output: one JSON document.")
    var json = false

    /// The config of a command that supervises (run, demo, serve): also refuses to nest
    /// deeper than maxDepth (exit 2).
    func loadSupervisingConfig() throws -> DroverConfig {
        let config = try loadConfig()
        if let refusal = ProcessSetup.nestingRefusal(maxDepth: config.maxDepth, environment: ProcessEnvironment.current()) {
            Terminal.error("drover: \(refusal)")
            throw ExitCode(2)
        }
        return config
    }

    /// The config, or exit 2 with the message naming file, line and key.
    func loadConfig() throws -> DroverConfig {
        do {
            let config = try ConfigLoader.load(explicitPath: configFile, environment: ProcessEnvironment.current())
            for warning in config.warnings { Terminal.error("drover: warning: \(warning)") }
            return config
        } catch {
            Terminal.error("drover: config error: \(error)")
            throw ExitCode(2)
        }
    }
}

/// Where a command's supervisor finds worker programs and which environment it passes on.
func defaultLaunch() -> WorkerLaunch {
    WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
}

/// What every supervising command (run, demo, serve) sets up before its first task: signal
/// dispositions, the orphan sweeper (a child subreaper), and the warden with the cgroup
/// that kill every descendant if this process dies.
func startSupervising() -> SupervisorWarden.Status {
    ProcessSetup.prepare()
    OrphanSweeper.enable()
    return SupervisorWarden.enable(helperDirectory: FileSystem.executableDirectory(), environment: ProcessEnvironment.current())
}

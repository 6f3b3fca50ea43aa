import ArgumentParser
import DroverCore
import DroverDaemon
import DroverTaskNotices
import DroverWire
import Glibc

struct HookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook",
        abstract: "Hooks for agent CLIs that use drover's MCP tools.",
        subcommands: [ClaudeHookCommand.self]
    )
}

/// `drover hook claude`: a Claude Code hook command (PostToolUse, UserPromptSubmit, Stop).
/// Whatever goes wrong, it exits 0 with nothing on stdout: a hook must never break the
/// user's session (Claude Code takes exit status 2 as "block", and shows other failures).
struct ClaudeHookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claude",
        abstract: "Claude Code hook: tell the model when the drover tasks it launched end.",
        discussion: """
            Reads the hook input Claude Code sends on stdin. At PostToolUse and UserPromptSubmit it adds the \
            tasks of the session that ended since last told to the conversation; at Stop it keeps the session \
            going while they have not ended (at most --stop-blocks times and for at most --stop-wait since the \
            user's last prompt). Never starts a daemon. `--print-settings` prints the hooks for Claude Code's \
            settings.json.
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("stop-blocks"), help: "How often Stop may be blocked between two prompts (default 5).")
    var stopBlocks: String?

    @Option(name: .customLong("stop-wait"), help: "How long after its first block Stop may still be blocked, e.g. 30m (default 30m).")
    var stopWait: String?

    @Flag(name: .customLong("print-settings"), help: "Print the hooks for Claude Code's settings.json and exit.")
    var printSettings = false

    /// Taken rather than refused, so a mistyped setting cannot make the hook fail (exit 2).
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var unrecognized: [String] = []

    /// Claude Code waits for a hook on every tool call; past this the hook gives up silently.
    static let timeLimitSeconds: UInt32 = 8

    func run() {
        if printSettings {
            Terminal.out(McpClientSnippets.claudeHooks(hookCommand: hookCommandLine()))
            return
        }
        alarm(Self.timeLimitSeconds)
        signal(SIGALRM) { _ in _exit(0) }
        for argument in unrecognized { note("ignoring the argument \"\(argument)\"") }
        do {
            let input = try ClaudeHookInput(bytes: try readInput())
            let state = StateFolder(explicit: common.stateDirectory, environment: ProcessEnvironment.current())
            var hook = ClaudeHook(state: state, limits: limits())
            let output = try hook.respond(to: input)
            for line in hook.notes { note(line) }
            if let output { Terminal.out(JSONWriter.string(.object(output.json()))) }
        } catch {
            note(error.message)
        }
    }

    private func note(_ text: String) {
        Terminal.error("drover hook claude: \(text)")
    }

    /// The bounds of blocking Stop; a bad value is reported and the default used.
    private func limits() -> ClaudeHook.StopLimits {
        var limits = ClaudeHook.StopLimits.standard
        if let stopBlocks {
            if let count = Int(stopBlocks), count >= 0 { limits.blocks = count } else { note("--stop-blocks \"\(stopBlocks)\" is not a count; using \(limits.blocks)") }
        }
        if let stopWait {
            if let ms = DurationText.milliseconds(stopWait) { limits.waitMs = ms } else { note("--stop-wait \"\(stopWait)\" is not a duration (such as 90s, 30m); using 30m") }
        }
        return limits
    }

    static let maxInputBytes = 64 << 20

    private func readInput() throws(ClaudeHookError) -> [UInt8] {
        if isatty(0) == 1 { throw ClaudeHookError("reads the hook input Claude Code sends on stdin; see `drover hook claude --help`") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ClaudeHookError("cannot read stdin: \(String(cString: strerror(errno)))") }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > Self.maxInputBytes { throw ClaudeHookError("the hook input is larger than \(Self.maxInputBytes >> 20) MB") }
        }
    }

    /// This very command with the same state folder, config and limits, as Claude Code runs it.
    private func hookCommandLine() -> String {
        var words = [FileSystem.executablePath(), "hook", "claude"]
        if let state = common.stateDirectory { words += ["--state-dir", FileSystem.absolute(state)] }
        if let config = common.configFile { words += ["--config", FileSystem.absolute(config)] }
        if let stopBlocks { words += ["--stop-blocks", stopBlocks] }
        if let stopWait { words += ["--stop-wait", stopWait] }
        return shellLine(words)
    }
}

import ArgumentParser
import DroverCore
import Glibc

/// The client commands run most often (status, launch, output, cancel, wait), parsed
/// without swift-argument-parser when their arguments are plain.
///
/// swift-argument-parser spends about 2.5 ms of every start on reflection and on the Swift
/// runtime's first look-ups of its generic types, more than the rest of `drover status`
/// together. A hot command whose arguments are all in the plain forms below (`--name value`,
/// `--name=value`, flags, positionals) is built here and validated by its own `validate()`.
/// Anything else -- help, --version, an unknown or repeated option, a value that starts with
/// `-`, `--`, a failed validation -- goes to the whole command tree, which gives the result,
/// error or help it always gave. DROVER_FULL_PARSE=1 skips this path (the tests compare the
/// two on the same argument lists).
enum HotCommands {
    /// The command, built and validated, or nil: parse with the whole tree.
    static func parse(_ arguments: ArraySlice<String>) -> ParsableCommand? {
        guard let name = arguments.first, let shape = shape(of: name), getenv("DROVER_FULL_PARSE") == nil,
              let given = PlainArguments(Array(arguments.dropFirst()), shape: shape)
        else { return nil }
        do {
            var command = try build(name, given)
            try command?.validate()
            return command
        } catch {
            return nil
        }
    }

    /// `drover --version` alone: the version, as swift-argument-parser prints it.
    static func isVersionRequest(_ arguments: ArraySlice<String>) -> Bool {
        arguments.count == 1 && arguments.first == "--version" && getenv("DROVER_FULL_PARSE") == nil
    }

    /// The long options of a hot command, by kind (`ClientOptions`' first); nil for any other.
    /// Plain arrays, not sets or a dictionary: their generic types cost a start-up look-up each.
    static func shape(of name: String) -> PlainArguments.Shape? {
        let client = PlainArguments.Shape(flags: ["--json", "--no-autostart"], options: ["--state-dir", "--config"])
        switch name {
        case "status": return client.adding(options: ["--since", "--limit"], repeatable: ["--status", "--agent"], positionals: .many)
        case "launch":
            return client.adding(
                flags: ["--worktree", "--keep-worktree", "--no-commit", "--wait"],
                options: ["--agent", "--prompt", "--prompt-file", "--description", "--provider", "--model", "--ttl", "--session",
                          "--cwd", "--priority", "--repo", "--base", "--sandbox", "--network"],
                repeatable: ["--env", "--set", "--limit"])
        case "output": return client.adding(flags: ["--wait"], options: ["--timeout"], positionals: .one)
        case "cancel": return client.adding(flags: ["--all"], positionals: .many)
        case "wait": return client.adding(flags: ["--all"], options: ["--timeout"], positionals: .many)
        default: return nil
        }
    }

    /// Every property of the command set from `given` (a property left unset would trap
    /// when read, so each builder names them all).
    private static func build(_ name: String, _ given: PlainArguments) throws -> ParsableCommand? {
        switch name {
        case "status":
            var command = StatusCommand()
            command.client = given.client
            command.ids = given.positionals
            command.statuses = given.all("--status")
            command.agents = given.all("--agent")
            command.since = given.one("--since")
            guard let limit = given.integer("--limit") else { return nil }
            command.limit = limit
            return command
        case "launch":
            var command = LaunchCommand()
            command.client = given.client
            command.agent = given.one("--agent")
            command.prompt = given.one("--prompt")
            command.promptFile = given.one("--prompt-file")
            command.description = given.one("--description")
            command.provider = given.one("--provider")
            command.model = given.one("--model")
            command.ttl = given.one("--ttl")
            command.session = given.one("--session")
            command.cwd = given.one("--cwd")
            command.env = given.all("--env")
            // --after reads values up to the next option: left to the whole tree.
            command.after = []
            guard let priority = given.integer("--priority") else { return nil }
            command.priority = priority
            command.worktree = given.flag("--worktree")
            command.repo = given.one("--repo")
            command.base = given.one("--base")
            command.keepWorktree = given.flag("--keep-worktree")
            command.noCommit = given.flag("--no-commit")
            command.sandbox = given.one("--sandbox")
            command.network = given.one("--network")
            command.settings = given.all("--set")
            command.resourceLimits = given.all("--limit")
            command.wait = given.flag("--wait")
            return command
        case "output":
            var command = OutputCommand()
            command.client = given.client
            command.id = given.positionals[0]
            command.wait = given.flag("--wait")
            command.timeout = given.one("--timeout")
            return command
        case "cancel":
            var command = CancelCommand()
            command.client = given.client
            command.ids = given.positionals
            command.all = given.flag("--all")
            return command
        case "wait":
            var command = WaitCommand()
            command.client = given.client
            command.ids = given.positionals
            command.all = given.flag("--all")
            command.timeout = given.one("--timeout")
            return command
        default:
            return nil
        }
    }
}

/// Arguments in the forms whose meaning no parser could read differently: each option at
/// most once unless repeatable, its value after `=` or as the next argument when that does
/// not start with `-`; flags without `=`; positionals that do not start with `-` and are not
/// empty. Help, version and completion requests are never plain.
struct PlainArguments {
    struct Shape {
        enum Positionals { case none, one, many }
        var flags: [String]
        var options: [String]
        var repeatable: [String] = []
        var positionals = Positionals.none

        func adding(flags: [String] = [], options: [String] = [], repeatable: [String] = [],
                    positionals: Positionals = .none) -> Shape {
            Shape(flags: self.flags + flags, options: self.options + options, repeatable: self.repeatable + repeatable,
                  positionals: positionals)
        }
    }

    /// (name, value) in the order given.
    private(set) var values: [(name: String, value: String)] = []
    private(set) var flags: [String] = []
    private(set) var positionals: [String] = []

    init?(_ arguments: [String], shape: Shape) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument.isEmpty || Self.answeredByTree(argument) { return nil }
            guard argument.hasPrefix("--") else {
                if argument.hasPrefix("-") { return nil }
                positionals.append(argument)
                continue
            }
            let equals = argument.firstIndex(of: "=")
            let name = equals.map { String(argument[..<$0]) } ?? argument
            if shape.flags.contains(name) {
                guard equals == nil, !flags.contains(name) else { return nil }
                flags.append(name)
                continue
            }
            guard shape.options.contains(name) || shape.repeatable.contains(name) else { return nil }
            if !shape.repeatable.contains(name) && values.contains(where: { $0.name == name }) { return nil }
            let value: String
            if let equals {
                value = String(argument[argument.index(after: equals)...])
            } else {
                guard index < arguments.count, !arguments[index].hasPrefix("-"), !Self.answeredByTree(arguments[index]) else { return nil }
                value = arguments[index]
                index += 1
            }
            values.append((name, value))
        }
        switch shape.positionals {
        case .none: if !positionals.isEmpty { return nil }
        case .one: if positionals.count != 1 { return nil }
        case .many: break
        }
    }

    /// What the root or the tree answers before (or instead of) a subcommand: help, version,
    /// completion scripts, the help dump.
    static func answeredByTree(_ argument: String) -> Bool {
        switch argument {
        case "-h", "--help", "-help", "help", "--version": return true
        default: return argument.hasPrefix("--generate-completion") || argument.hasPrefix("--experimental")
        }
    }

    func one(_ name: String) -> String? { values.last(where: { $0.name == name })?.value }
    func all(_ name: String) -> [String] { values.filter { $0.name == name }.map(\.value) }
    func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The option as a whole number: .some(nil) when absent, nil when not a number.
    func integer(_ name: String) -> Int?? {
        guard let text = one(name) else { return .some(nil) }
        return Int(text).map { .some($0) }
    }

    var client: ClientOptions {
        var common = CommonOptions()
        common.stateDirectory = one("--state-dir")
        common.configFile = one("--config")
        common.json = flag("--json")
        var client = ClientOptions()
        client.common = common
        client.noAutostart = flag("--no-autostart")
        return client
    }
}

import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire

/// Options of every command that talks to the daemon.
struct ClientOptions: ParsableArguments {
    @OptionGroup var common: CommonOptions

    @Flag(name: .customLong("no-autostart"), help: "Fail (exit 5) instead of starting a daemon when none answers.")
    var noAutostart = false

    var state: StateFolder { StateFolder(explicit: common.stateDirectory, environment: ProcessEnvironment.current()) }

    /// What a command that finds no daemon adds to saying so.
    static let noDaemonHint = " (start one with `drover serve`, or leave out --no-autostart)"

    /// Connects, starting the daemon unless told not to; exit 5 when that fails.
    func connect(noDaemonHint: String = ClientOptions.noDaemonHint) throws -> ControlClient {
        do {
            var serve: [String] = []
            if let config = common.configFile { serve += ["--config", FileSystem.absolute(config)] }
            return try ControlClient.connect(state: state, autostart: !noAutostart, serveArguments: serve) { () throws(ClientError) in
                // A config error found while autostarting is the config error (exit 2), not a
                // daemon that would not start.
                do {
                    _ = try ConfigLoader.load(explicitPath: common.configFile, environment: ProcessEnvironment.current())
                } catch {
                    throw ClientError(message: "config error: \(error)", exitCode: 2)
                }
            }
        } catch {
            Terminal.error("drover: \(error)" + (error.noDaemon ? noDaemonHint : ""))
            throw ExitCode(error.exitCode)
        }
    }

    /// One request, one answer; an error answer becomes its exit status.
    func call<Call: ControlCall>(_ call: Call, noDaemonHint: String = ClientOptions.noDaemonHint) throws -> Call.Reply {
        let client = try connect(noDaemonHint: noDaemonHint)
        do {
            return try client.call(call)
        } catch {
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}

extension ClientOptions {
    /// Sends one request and hands every answer frame to `handle` until it says the answer
    /// is complete. An error answer, or a lost daemon, becomes its exit status; so does the
    /// daemon closing early when `closingIsError`.
    func stream<Call: ControlCall>(_ call: Call, closingIsError: Bool = false, onFailure: () -> Void = {},
                                   _ handle: (Call.Reply) throws -> Bool) throws {
        let connection = try connect()
        do {
            try connection.send(call)
            while let frame = try connection.next(answering: Call.self) {
                if try handle(frame) { return }
            }
            if closingIsError { throw ClientError(message: "the daemon closed the connection", exitCode: 5) }
        } catch let error as ClientError {
            onFailure()
            Terminal.error("drover: \(error)")
            throw ExitCode(error.exitCode)
        }
    }
}

extension ClientOptions {
    /// What a request that starts tasks tells the daemon of this client: the config it names
    /// (a daemon running another refuses, exit 2), and this environment's values of the
    /// passEnv names of `agent` (of every agent when nil), which win over the daemon's.
    func context(agent: String?) -> ClientContext {
        let environment = ProcessEnvironment.current()
        guard let config = try? ConfigLoader.load(explicitPath: common.configFile, environment: environment) else {
            // One that does not load is still named: the daemon then says it differs.
            return ClientContext(config: ConfigIdentity.named(explicitPath: common.configFile, environment: environment))
        }
        let agents = agent.map { name in config.agents[name].map { [$0] } ?? [] } ?? Array(config.agents.values)
        let names = Set(agents.flatMap(\.passEnv)).sorted()
        var context = ClientContext(config: config.source == nil ? ConfigIdentity(path: nil, digest: nil) : config.identity)
        for name in names { context.passEnv[name] = environment[name] }
        return context
    }
}

/// Parses a duration flag or fails with a usage error naming the flag.
func parseDuration(_ text: String?, flag: String) throws -> Int? {
    guard let text else { return nil }
    guard let ms = DurationText.milliseconds(text) else {
        throw ValidationError("\(flag): \"\(text)\" is not a duration (milliseconds, or such as 1500ms, 90s, 30m, 2h)")
    }
    return ms
}

/// The exit status SPEC section 7 gives a set of ended tasks.
func exitStatus(for statuses: [TaskStatus]) -> Int32 {
    if statuses.contains(.error) { return 1 }
    if statuses.contains(.cancelled) { return 4 }
    if statuses.contains(where: { $0 != .completed }) { return 3 }
    return 0
}

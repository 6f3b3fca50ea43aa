import DroverCore
import DroverWire

/// What a client says of itself with the requests that start tasks (launch, continue,
/// restart): the config it names, so that a daemon running another one refuses instead of
/// quietly using its own, and its values of the agent's passEnv names, which win over the
/// daemon's. Members `config` {path, digest} and `pass_env` {NAME: value}.
public struct ClientContext: Sendable, Equatable {
    public var config: ConfigIdentity?
    public var passEnv: [String: String] = [:]

    public static let keys = ["config", "pass_env"]

    public init(config: ConfigIdentity? = nil, passEnv: [String: String] = [:]) {
        self.config = config
        self.passEnv = passEnv
    }

    /// This process's: the config it names now, and its values of the `agents`' passEnv names.
    public static func current(configFile: String?, environment: [String: String], agents: [AgentConfig]) -> ClientContext {
        var context = ClientContext(config: ConfigIdentity.named(explicitPath: configFile, environment: environment))
        for name in Set(agents.flatMap(\.passEnv)) { context.passEnv[name] = environment[name] }
        return context
    }

    init(_ fields: FieldReader) throws(FieldError) {
        if let named = try fields.object("config") {
            let members = try FieldReader(named, known: ["path", "digest"])
            config = ConfigIdentity(path: try members.cString("path"), digest: try members.string("digest"))
        }
        for (name, value) in try fields.object("pass_env")?.members ?? JSONObject().members {
            guard !name.isEmpty, !name.contains("="), !name.utf8.contains(0) else {
                throw FieldError(field: "pass_env", "\"pass_env\" names must be non-empty, without \"=\" or NUL, found \(FieldReader.describe(.string(name)))")
            }
            guard case .string(let text) = value, !text.utf8.contains(0) else {
                throw FieldError(field: "pass_env.\(name)", "\"pass_env.\(name)\" must be a string without NUL bytes")
            }
            passEnv[name] = text
        }
    }

    func add(to object: inout JSONObject) {
        if let config {
            var members = JSONObject()
            if let path = config.path { members["path"] = .string(path) }
            if let digest = config.digest { members["digest"] = .string(digest) }
            object["config"] = .object(members)
        }
        if !passEnv.isEmpty {
            var members = JSONObject()
            for (name, value) in passEnv.sorted(by: { $0.key < $1.key }) { members[name] = .string(value) }
            object["pass_env"] = .object(members)
        }
    }

    /// The request's members without these, for a reader that knows only its own keys.
    static func strip(_ members: JSONObject) -> JSONObject {
        var rest = JSONObject()
        for (key, value) in members.members where !keys.contains(key) { rest[key] = value }
        return rest
    }
}

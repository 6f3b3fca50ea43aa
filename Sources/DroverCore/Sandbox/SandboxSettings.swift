import DroverWire

/// A task's sandbox (SPEC 17): the worker runs under bubblewrap, in mount and pid namespaces
/// of its own and, with `network: none`, a network namespace with loopback only. Per agent
/// and per task; a task's members replace its agent's, member by member.
public struct SandboxSettings: Sendable, Equatable {
    public enum Filesystem: String, Sendable {
        /// Everything read-only but the task's working folder, a private /tmp and `writable`.
        case workdir
        /// Everything read-only but a private /tmp.
        case readonly
        /// The filesystem as it is (the state folder is still hidden).
        case none
    }

    public enum Network: String, Sendable {
        case none
        case host
    }

    public var filesystem: Filesystem?
    public var network: Network?
    public var writable: [String]?
    public var hide: [String]?

    public init(filesystem: Filesystem? = nil, network: Network? = nil, writable: [String]? = nil, hide: [String]? = nil) {
        self.filesystem = filesystem
        self.network = network
        self.writable = writable
        self.hide = hide
    }

    public static let keys = ["filesystem", "network", "writable", "hide"]
    /// Credentials a coding agent has no business reading.
    public static let defaultHide = ["~/.ssh", "~/.aws", "~/.config/gcloud", "~/.docker", "~/.netrc", "~/.gnupg"]

    public func over(_ other: SandboxSettings) -> SandboxSettings {
        SandboxSettings(filesystem: filesystem ?? other.filesystem, network: network ?? other.network,
                        writable: writable ?? other.writable, hide: hide ?? other.hide)
    }

    /// The settings in force, defaults filled in.
    public var resolved: SandboxSettings {
        SandboxSettings(filesystem: filesystem ?? .workdir, network: network ?? .host, writable: writable ?? [], hide: hide ?? Self.defaultHide)
    }

    /// What task.json and `DROVER_SANDBOX` say (of resolved settings).
    public var json: JSONValue {
        let resolved = self.resolved
        return ["filesystem": .string(resolved.filesystem!.rawValue), "network": .string(resolved.network!.rawValue),
                "writable": .array(resolved.writable!.map { .string($0) }), "hide": .array(resolved.hide!.map { .string($0) })]
    }

    /// Reads `{"filesystem", "network", "writable", "hide"}` (config and task requests alike).
    public static func read(_ value: JSONValue, _ path: String) throws(FieldError) -> SandboxSettings {
        guard case .object(let members) = value else {
            throw FieldError(field: path, "\"\(path)\" must be an object with filesystem, network, writable, hide; found \(value.typeName)")
        }
        var settings = SandboxSettings()
        for (key, item) in members.members {
            let field = "\(path).\(key)"
            switch key {
            case "filesystem":
                guard let text = item.stringValue, let mode = Filesystem(rawValue: text) else {
                    throw FieldError(field: field, "\"\(field)\" is \"workdir\", \"readonly\" or \"none\", found \(FieldReader.describe(item))")
                }
                settings.filesystem = mode
            case "network":
                guard let text = item.stringValue, let mode = Network(rawValue: text) else {
                    throw FieldError(field: field, "\"\(field)\" is \"none\" (loopback only) or \"host\", found \(FieldReader.describe(item))")
                }
                settings.network = mode
            case "writable", "hide":
                guard case .array(let items) = item else { throw FieldError(field: field, "\"\(field)\" must be an array of paths, found \(item.typeName)") }
                var paths: [String] = []
                for (index, entry) in items.enumerated() {
                    guard let path = entry.stringValue, path.hasPrefix("/") || path.hasPrefix("~/"), !path.utf8.contains(0) else {
                        throw FieldError(field: "\(field)[\(index)]", "\"\(field)\" paths are absolute or start with ~/, found \(FieldReader.describe(entry))")
                    }
                    paths.append(path)
                }
                if key == "writable" { settings.writable = paths } else { settings.hide = paths }
            default:
                throw FieldError(field: field, "unknown key \"\(key)\" (a sandbox has filesystem, network, writable, hide)")
            }
        }
        return settings
    }
}

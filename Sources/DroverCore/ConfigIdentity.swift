/// Which config file a process runs with, and what the file held when it was read. A client
/// sends its own with the requests that start tasks, so that a daemon running another config
/// (or an older version of the same file) says so instead of quietly using its own.
public struct ConfigIdentity: Sendable, Equatable {
    /// The file, as an absolute path; nil for the built-in defaults.
    public var path: String?
    /// A digest of the file's bytes; nil when it could not be read.
    public var digest: String?

    public init(path: String?, digest: String?) {
        self.path = path
        self.digest = digest
    }

    /// The file the lookup order finds: `--config`, `$DROVER_CONFIG`,
    /// `$XDG_CONFIG_HOME/drover/config.jsonc` (`~/.config` when unset); nil when none is there.
    public static func locate(explicitPath: String?, environment: [String: String]) -> String? {
        if let explicitPath { return explicitPath }
        if let fromEnv = environment["DROVER_CONFIG"], !fromEnv.isEmpty { return fromEnv }
        let configHome = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"].map { $0 + "/.config" } ?? ".config")
        let defaultPath = configHome + "/drover/config.jsonc"
        return FileSystem.exists(defaultPath) ? defaultPath : nil
    }

    /// The config a client names now, read from disk (without parsing it).
    public static func named(explicitPath: String?, environment: [String: String]) -> ConfigIdentity {
        guard let path = locate(explicitPath: explicitPath, environment: environment) else { return ConfigIdentity(path: nil, digest: nil) }
        return ConfigIdentity(path: FileSystem.absolute(path), digest: (try? FileSystem.read(path)).map(digest))
    }

    /// FNV-1a, 64 bits: enough to tell an edited file from the one loaded, not a secret.
    public static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Why a daemon running `self` should not act for a client naming `client`; nil when
    /// they agree. A client that names no file takes the daemon's config as it is.
    public func mismatch(with client: ConfigIdentity) -> String? {
        guard let clientPath = client.path else { return nil }
        let ours = path.map { FileSystem.realPath($0) ?? $0 }
        let theirs = FileSystem.realPath(clientPath) ?? clientPath
        guard ours == theirs else {
            return "this command's config is \(clientPath), but the daemon runs with \(path ?? "the built-in defaults")"
        }
        guard digest == client.digest else { return "\(clientPath) has changed since the daemon loaded it" }
        return nil
    }
}

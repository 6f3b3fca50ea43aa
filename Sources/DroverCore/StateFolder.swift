/// The daemon's state folder and the files in it that are not task files.
public struct StateFolder: Sendable {
    public let path: String

    /// `--state-dir`, else `$DROVER_HOME`, else `$XDG_STATE_HOME/drover`, else
    /// `~/.local/state/drover` (SPEC section 6).
    public init(explicit: String?, environment: [String: String]) {
        func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
        if let explicit = nonEmpty(explicit) {
            path = FileSystem.absolute(explicit)
        } else if let home = nonEmpty(environment["DROVER_HOME"]) {
            path = FileSystem.absolute(home)
        } else if let state = nonEmpty(environment["XDG_STATE_HOME"]) {
            path = FileSystem.absolute(state) + "/drover"
        } else {
            path = (nonEmpty(environment["HOME"]) ?? "/tmp") + "/.local/state/drover"
        }
    }

    public var socket: String { path + "/drover.sock" }
    public var lock: String { path + "/daemon.lock" }
    public var log: String { path + "/daemon.log" }
}

import DroverWire

/// bwrap's argv for one task (SPEC 17), as a plain list: no shell ever sees it. Mounts are
/// applied in order, each over what came before: the root (read-only unless `filesystem:
/// none`), a private /tmp, the hidden credentials, the writable folders, and last the state
/// folder hidden but for the task's own folder and its session's transcript, read-only, with
/// the working folder writable again where it lies inside the task's folder.
public struct SandboxLaunch: Sendable {
    public var settings: SandboxSettings
    /// The supervisor's state (or results) folder.
    public var stateFolder: String
    public var taskFolder: String
    public var sessionFile: String
    /// The task's working folder (cwd, private folder or worktree).
    public var workdir: String
    /// More folders the task must write whatever the settings (a worktree's git folder).
    public var needsWritable: [String] = []
    /// Folders of the worker's own files (its program, its script) that a private /tmp would hide.
    public var programFolders: [String] = []
    public var home: String?
    /// An empty read-only file that hidden files are replaced by.
    public var emptyFile: String { stateFolder + "/sandbox-empty" }

    public init(settings: SandboxSettings, stateFolder: String, taskFolder: String, sessionFile: String, workdir: String, home: String?) {
        self.settings = settings.resolved
        self.stateFolder = stateFolder
        self.taskFolder = taskFolder
        self.sessionFile = sessionFile
        self.workdir = workdir
        self.home = home
    }

    /// `~/x` under the supervisor's HOME (nil when there is none to put it under).
    func expand(_ path: String) -> String? {
        guard path.hasPrefix("~/") else { return path }
        guard let home, home.hasPrefix("/") else { return nil }
        return (home.hasSuffix("/") ? String(home.dropLast()) : home) + String(path.dropFirst())
    }

    /// `bwrap ... --` (the worker's argv follows).
    public func arguments(bwrap: String) -> [String] {
        var argv = [bwrap, "--die-with-parent", "--unshare-pid"]
        if settings.network == SandboxSettings.Network.none { argv.append("--unshare-net") }
        let filesystem = settings.filesystem ?? .workdir
        argv += filesystem == .none ? ["--bind", "/", "/"] : ["--ro-bind", "/", "/"]
        argv += ["--dev", "/dev", "--proc", "/proc"]
        if filesystem != .none {
            argv += ["--tmpfs", "/tmp"]
            // What the worker runs from stays visible under the private /tmp.
            for folder in programFolders where Self.isInside(folder, "/tmp") { argv += ["--ro-bind-try", folder, folder] }
        }
        for path in (settings.hide ?? []).compactMap(expand) {
            if FileSystem.isDirectory(path) {
                argv += ["--tmpfs", path]
            } else if FileSystem.exists(path) {
                // An empty file (a device such as /dev/null cannot be opened on bwrap's nodev binds).
                argv += ["--ro-bind", emptyFile, path]
            }
        }
        switch filesystem {
        case .workdir:
            argv += ["--bind", workdir, workdir]
            for path in (settings.writable ?? []).compactMap(expand) + needsWritable { argv += ["--bind-try", path, path] }
        case .readonly:
            if Self.isInside(workdir, "/tmp") { argv += ["--ro-bind", workdir, workdir] }
        case .none:
            break
        }
        argv += ["--tmpfs", stateFolder, "--ro-bind", taskFolder, taskFolder, "--ro-bind-try", sessionFile, sessionFile]
        if filesystem != .readonly && Self.isInside(workdir, taskFolder) { argv += ["--bind", workdir, workdir] }
        return argv + ["--chdir", workdir, "--"]
    }

    /// `DROVER_SANDBOX`: the settings in force, as one line of JSON.
    public var environmentValue: String { JSONWriter.string(settings.json) }

    static func isInside(_ path: String, _ folder: String) -> Bool {
        path == folder || path.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/")
    }
}

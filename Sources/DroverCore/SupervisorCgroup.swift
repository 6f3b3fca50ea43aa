import Glibc

/// The supervisor's own cgroup v2 folder, where the machine lets it make one: the
/// supervisor moves itself in before its first child, so every descendant is born inside
/// and none can leave (setsid does not change a cgroup). The warden kills the whole folder
/// if the supervisor dies.
public enum SupervisorCgroup {
    public enum Outcome: Equatable, Sendable {
        case created(path: String)
        case unavailable(reason: String)
    }

    /// Makes `<own cgroup>/drover-<pid>` and moves this process into it.
    /// `warden` (the process that must outlive this one) gets a folder of its own beside it,
    /// `drover-<pid>-warden`, so that no process is left in the parent: a parent cgroup
    /// drover was alone in can then hand its controllers down (TaskCgroups).
    public static func create(environment: [String: String], warden: Int32? = nil) -> Outcome {
        if environment["DROVER_NO_CGROUP"].map({ !$0.isEmpty && $0 != "0" }) == true {
            return .unavailable(reason: "turned off by DROVER_NO_CGROUP")
        }
        guard cgroup2Mount() != nil else { return .unavailable(reason: "no cgroup v2 hierarchy is mounted") }
        guard let folder = folder(forSupervisor: getpid()) else { return .unavailable(reason: "this process is in no cgroup v2 group") }
        if mkdir(folder, 0o755) != 0 && errno != EEXIST {
            return .unavailable(reason: "cannot make \(folder): \(String(cString: strerror(errno)))")
        }
        if let problem = writeControlFile(folder + "/cgroup.procs", "\(getpid())") {
            rmdir(folder)
            return .unavailable(reason: "cannot move into \(folder): \(problem)")
        }
        let parent = FileSystem.dirname(of: folder)
        if let warden {
            let wardenFolder = folder + "-warden"
            if mkdir(wardenFolder, 0o755) == 0 || errno == EEXIST {
                if writeControlFile(wardenFolder + "/cgroup.procs", "\(warden)") != nil { rmdir(wardenFolder) }
            }
        }
        removeStaleFolders(in: parent, keeping: folder)
        TaskCgroups.setUp(supervisorFolder: folder)
        return .created(path: folder)
    }

    /// Empty folders that drovers killed before they could clean up left beside this one.
    /// rmdir refuses a cgroup that still has processes, so a live drover's folders stay.
    private static func removeStaleFolders(in parent: String, keeping own: String) {
        let ownName = FileSystem.basename(of: own)
        for name in FileSystem.list(parent) where name.hasPrefix("drover-") && !name.hasPrefix(ownName) {
            let path = parent + "/" + name
            // A live drover is always in its own folder: "populated 1" for the whole tree.
            guard readControlFile(path + "/cgroup.events").contains("populated 0") else { continue }
            for child in FileSystem.list(path) where FileSystem.isDirectory(path + "/" + child) { rmdir(path + "/" + child) }
            rmdir(path)
        }
    }

    /// Whether `create` could work here: makes and removes a folder beside where it would
    /// make its own, moving nothing.
    public static func probe() -> Outcome {
        guard let mount = cgroup2Mount() else { return .unavailable(reason: "no cgroup v2 hierarchy is mounted") }
        guard let own = ownCgroup() else { return .unavailable(reason: "this process is in no cgroup v2 group") }
        let folder = mount + (own == "/" ? "" : own) + "/drover-probe-\(getpid())"
        guard mkdir(folder, 0o755) == 0 else { return .unavailable(reason: "cannot make \(folder): \(String(cString: strerror(errno)))") }
        rmdir(folder)
        return .created(path: folder)
    }

    /// The controllers this process's cgroup hands to its children (its cgroup.subtree_control):
    /// what a drover started here could limit its tasks with.
    public static func delegatedControllers() -> Set<String> {
        guard let mount = cgroup2Mount(), let own = ownCgroup() else { return [] }
        let text = readControlFile(mount + (own == "/" ? "" : own) + "/cgroup.subtree_control")
        return Set(text.split(separator: " ").map(String.init))
    }

    /// The folder `create` makes for process `pid` (nil without cgroup v2).
    public static func folder(forSupervisor pid: Int32) -> String? {
        guard let mount = cgroup2Mount(), let own = ownCgroup() else { return nil }
        return mount + (own == "/" ? "" : own) + "/drover-\(pid)"
    }

    /// Where the cgroup2 filesystem is mounted (from /proc/self/mountinfo).
    static func cgroup2Mount() -> String? {
        let text = String(decoding: (try? FileSystem.read("/proc/self/mountinfo")) ?? [], as: UTF8.self)
        for line in text.split(separator: "\n") {
            // "... mount-point options - fstype source superoptions"
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { continue }
            let fields = halves[0].split(separator: " ")
            if fields.count > 4 { return String(fields[4]) }
        }
        return nil
    }

    /// This process's cgroup v2 path ("0::/path" in /proc/self/cgroup).
    static func ownCgroup() -> String? {
        let text = String(decoding: (try? FileSystem.read("/proc/self/cgroup")) ?? [], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// A control file's text without its last newline (empty when unreadable).
    static func readControlFile(_ path: String) -> String {
        var text = String(decoding: (try? FileSystem.read(path)) ?? [], as: UTF8.self)
        while text.last == "\n" { text.removeLast() }
        return text
    }

    /// Writes a cgroup control file in place (they cannot be replaced); the error text, or nil.
    static func writeControlFile(_ path: String, _ text: String) -> String? {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        let written = text.withCString { write(fd, $0, strlen($0)) }
        return written < 0 ? String(cString: strerror(errno)) : nil
    }
}

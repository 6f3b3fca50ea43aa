import Glibc
import Synchronization

/// A cgroup per task for the `memory` and `processes` limits, where the supervisor's parent
/// cgroup delegates the `memory` or `pids` controller to it (listed in the parent's
/// cgroup.subtree_control: drover never enables a controller above its own folder).
///
/// Layout: the supervisor's folder `drover-<pid>` holds `supervisor` (drover itself: a
/// folder that hands controllers to its children may hold no process) and one folder per
/// task with limits. `drover-limits` moves itself into the task's folder before it execs
/// the worker, so every descendant of the worker is counted and limited there.
public enum TaskCgroups {
    struct Setup: Sendable {
        let folder: String
        let controllers: Set<String>
    }

    private static let setup = Mutex<Setup?>(nil)

    /// The controllers tasks can be limited with ("memory", "pids"); empty without them.
    public static var controllers: Set<String> { setup.withLock { $0?.controllers ?? [] } }

    /// Called once the supervisor is in its own cgroup folder.
    static func setUp(supervisorFolder folder: String) {
        let parent = FileSystem.dirname(of: folder)
        var delegated = words(parent + "/cgroup.subtree_control")
        // A cgroup drover was alone in (a systemd unit with Delegate=yes) is its own: hand
        // its available controllers down. The root cgroup, or one shared with other
        // processes, is left as it is.
        if SupervisorCgroup.readControlFile(parent + "/cgroup.procs").isEmpty, FileSystem.exists(parent + "/cgroup.type") {
            for controller in ["memory", "pids"] where words(parent + "/cgroup.controllers").contains(controller) && !delegated.contains(controller) {
                if SupervisorCgroup.writeControlFile(parent + "/cgroup.subtree_control", "+\(controller)") == nil { delegated.insert(controller) }
            }
        }
        let wanted = ["memory", "pids"].filter(delegated.contains)
        guard !wanted.isEmpty else { return }
        let leaf = folder + "/supervisor"
        guard mkdir(leaf, 0o755) == 0 || errno == EEXIST,
              SupervisorCgroup.writeControlFile(leaf + "/cgroup.procs", "\(getpid())") == nil
        else { return }
        var enabled: Set<String> = []
        for controller in wanted where SupervisorCgroup.writeControlFile(folder + "/cgroup.subtree_control", "+\(controller)") == nil {
            enabled.insert(controller)
        }
        if !enabled.isEmpty { setup.withLock { $0 = Setup(folder: folder, controllers: enabled) } }
    }

    private static func words(_ path: String) -> Set<String> {
        Set(SupervisorCgroup.readControlFile(path).split(separator: " ").map(String.init))
    }

    /// Makes the task's folder with its limits; nil when no limit of the task can be a
    /// cgroup limit here (the rlimits still apply).
    static func make(taskID: String, limits: ResourceLimits) -> String? {
        guard let setup = setup.withLock({ $0 }) else { return nil }
        var settings: [(String, String)] = []
        if let memory = limits.memory, setup.controllers.contains("memory") {
            settings.append(("memory.max", "\(memory)"))
            settings.append(("memory.swap.max", "0"))
        }
        if let processes = limits.processes, setup.controllers.contains("pids") {
            settings.append(("pids.max", "\(processes)"))
        }
        guard !settings.isEmpty else { return nil }
        let folder = setup.folder + "/" + taskID
        guard mkdir(folder, 0o755) == 0 || errno == EEXIST else { return nil }
        for (file, value) in settings where FileSystem.exists(folder + "/" + file) {
            if SupervisorCgroup.writeControlFile(folder + "/" + file, value) != nil, file != "memory.swap.max" {
                rmdir(folder)
                return nil
            }
        }
        return folder
    }

    /// What the task's folder recorded: peak memory, peak process count, and whether the
    /// kernel's OOM killer ran in it.
    public struct Usage: Sendable, Equatable {
        public var peakMemoryKiB: Int?
        public var peakProcesses: Int?
        public var oomKills = 0
        /// How often a fork in the task was refused at pids.max.
        public var forkRefusals = 0

        public init(peakMemoryKiB: Int? = nil, peakProcesses: Int? = nil, oomKills: Int = 0, forkRefusals: Int = 0) {
            self.peakMemoryKiB = peakMemoryKiB
            self.peakProcesses = peakProcesses
            self.oomKills = oomKills
            self.forkRefusals = forkRefusals
        }
    }

    static func usage(of folder: String) -> Usage {
        var usage = Usage()
        if let bytes = Int(SupervisorCgroup.readControlFile(folder + "/memory.peak")) { usage.peakMemoryKiB = bytes / 1024 }
        usage.peakProcesses = Int(SupervisorCgroup.readControlFile(folder + "/pids.peak"))
        for line in SupervisorCgroup.readControlFile(folder + "/memory.events").split(separator: "\n") where line.hasPrefix("oom_kill ") {
            usage.oomKills = Int(line.dropFirst("oom_kill ".count)) ?? 0
        }
        for line in SupervisorCgroup.readControlFile(folder + "/pids.events").split(separator: "\n") where line.hasPrefix("max ") {
            usage.forkRefusals = Int(line.dropFirst("max ".count)) ?? 0
        }
        return usage
    }

    /// Kills whatever is left in the task's folder (descendants that left the task's
    /// process group included) and removes it, trying again while its last processes exit.
    static func remove(_ folder: String, loop: EventLoop) {
        _ = SupervisorCgroup.writeControlFile(folder + "/cgroup.kill", "1")
        if rmdir(folder) == 0 || errno == ENOENT { return }
        let timer = LoopTimer(loop: loop)
        var attempts = 0
        timer.start(after: 20, repeat: 20) {
            attempts += 1
            if rmdir(folder) == 0 || errno == ENOENT || attempts >= 100 {
                timer.stop()
                _ = timer
            }
        }
    }
}

import CDroverSystem
import Glibc
import Synchronization

/// Makes sure no child outlives the supervisor, even one killed with SIGKILL: a small
/// helper process (drover-warden, beside drover) is told each task's process group and the
/// supervisor's cgroup, and kills them all when its pipe from the supervisor reaches end of
/// file. posix_spawn has no parent-death signal, and that would reach only the worker, not
/// the processes it started.
public enum SupervisorWarden {
    /// The write end of the pipe to the warden, or -1.
    private static let pipe = Atomic<Int32>(-1)
    /// The warden's pid, reaped by `finish` when this process exits normally.
    private static let wardenPid = Atomic<Int32>(0)
    /// The cgroup folder this process moved into, if any (for `finish`).
    private static let cgroupFolder = Mutex<String?>(nil)

    public struct Status: Sendable {
        /// The warden's pid, or nil with the reason it is not running.
        public let pid: Int32?
        public let cgroup: SupervisorCgroup.Outcome
        public let problem: String?

        /// One line for a log: what guards against a supervisor that dies.
        public var summary: String {
            var parts: [String] = []
            if let pid { parts.append("warden pid \(pid)") } else { parts.append("no warden (\(problem ?? "unknown"))") }
            switch cgroup {
            case .created(let path): parts.append("cgroup \(path)")
            case .unavailable(let reason): parts.append("no cgroup: \(reason); tasks are tracked by process group and subreaper")
            }
            return parts.joined(separator: "; ")
        }
    }

    /// Starts the warden (once per process) and, where cgroup v2 allows, moves this process
    /// into a cgroup of its own. Call before the first task starts.
    public static func enable(helperDirectory: String, environment: [String: String]) -> Status {
        let program = helperDirectory + "/drover-warden"
        guard FileSystem.isExecutableFile(program) else {
            return Status(pid: nil, cgroup: .unavailable(reason: "no warden"), problem: "\(program) is missing")
        }
        var ends: [Int32] = [0, 0]
        guard drover_pipe(&ends) == 0 else {
            return Status(pid: nil, cgroup: .unavailable(reason: "no warden"), problem: "pipe: \(String(cString: strerror(errno)))")
        }
        let devNull = open("/dev/null", O_RDWR | O_CLOEXEC)
        let argv = CStringArray(["drover-warden"])
        let envp = CStringArray([])
        var pid: pid_t = 0
        let rc = drover_spawn(&pid, program, argv.pointer, envp.pointer, "/", ends[0], devNull, devNull)
        argv.free()
        envp.free()
        close(ends[0])
        close(devNull)
        guard rc == 0 else {
            close(ends[1])
            return Status(pid: nil, cgroup: .unavailable(reason: "no warden"), problem: "cannot start \(program): \(String(cString: strerror(rc)))")
        }
        // The warden is our child but no task's: the orphan sweeper must leave it alone.
        OrphanSweeper.spawned(pid)
        pipe.store(ends[1], ordering: .releasing)
        wardenPid.store(pid, ordering: .releasing)
        // The warden stays outside the cgroup it may have to kill.
        let cgroup = SupervisorCgroup.create(environment: environment, warden: pid)
        if case .created(let path) = cgroup {
            cgroupFolder.withLock { $0 = path }
            tell("c \(path)\n")
        }
        atexit { SupervisorWarden.finish() }
        return Status(pid: pid, cgroup: cgroup, problem: nil)
    }

    /// At a normal exit: leaves the cgroup (so the warden can remove it at once), lets the
    /// warden do its last sweep, and reaps it, so it never lingers as a zombie of init.
    static func finish() {
        let fd = pipe.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { return }
        if let folder = cgroupFolder.withLock({ $0 }) {
            // Back where drover started; if that folder now hands controllers down (it may
            // hold no process then), into the warden's, which the next drover clears.
            if SupervisorCgroup.writeControlFile(FileSystem.dirname(of: folder) + "/cgroup.procs", "\(getpid())") != nil {
                _ = SupervisorCgroup.writeControlFile(folder + "-warden/cgroup.procs", "\(getpid())")
            }
        }
        close(fd)
        let pid = wardenPid.load(ordering: .acquiring)
        guard pid > 0 else { return }
        // Bounded: the warden needs a few milliseconds; never hold up an exit for long.
        for _ in 0..<400 {
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped < 0 && errno != EINTR) { break }
            usleep(5000)
        }
        // The warden's own folder (SupervisorCgroup.create) is empty once it has exited.
        if let folder = cgroupFolder.withLock({ $0 }) { rmdir(folder + "-warden") }
    }

    static func groupStarted(_ pgid: Int32) {
        tell("g \(pgid)\n")
    }

    static func groupEnded(_ pgid: Int32) {
        tell("u \(pgid)\n")
    }

    /// One short line: a single write of at most PIPE_BUF bytes is atomic, whichever
    /// thread sends it.
    private static func tell(_ line: String) {
        let fd = pipe.load(ordering: .acquiring)
        guard fd >= 0 else { return }
        var bytes = Array(line.utf8)
        let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written < 0 && errno == EPIPE {
            // The warden is gone (someone killed it): stop telling it.
            if pipe.compareExchange(expected: fd, desired: -1, ordering: .acquiringAndReleasing).exchanged { close(fd) }
        }
    }
}

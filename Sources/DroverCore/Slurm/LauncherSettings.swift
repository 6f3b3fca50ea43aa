/// How a task's worker is started (SPEC 14): here, or through `srun` on a Slurm cluster.
/// Set per agent or for all (`background_task`); an agent's setting replaces the global one.
public enum Launcher: Sendable, Equatable {
    case local
    case slurm(LauncherSettings)

    public var slurm: LauncherSettings? {
        if case .slurm(let settings) = self { return settings }
        return nil
    }
}

/// A Slurm launcher's settings.
public struct LauncherSettings: Sendable, Equatable {
    /// `--partition`.
    public var partition: String?
    /// `--licenses <provider>:1` (default true): Slurm licenses hold a provider's limit
    /// across every supervisor of the cluster.
    public var licenses = true
    /// More srun options, before `--`.
    public var srunArgs: [String] = []
    /// srun's path (default: found on PATH).
    public var srun = "srun"

    public init(partition: String? = nil, licenses: Bool = true, srunArgs: [String] = [], srun: String = "srun") {
        self.partition = partition
        self.licenses = licenses
        self.srunArgs = srunArgs
        self.srun = srun
    }

    /// srun's argv for a worker (`worker` unchanged after `--`). The job is named after the
    /// task, so it can be found in squeue without its id; `--time` is the ttl rounded up to
    /// minutes, so Slurm ends it too should drover be gone.
    public func srunArguments(taskID: String, license: String?, ttlMs: Int, worker: [String]) -> [String] {
        var argv = [srun, "--job-name", Self.jobName(taskID)]
        if licenses, let license { argv += ["--licenses", license + ":1"] }
        if ttlMs > 0 { argv += ["--time", String((ttlMs + 59_999) / 60_000)] }
        // --unbuffered: slurmstepd line-buffers a task's stdout by default, and frames are
        // not lines: a frame would wait for the next newline byte.
        argv += ["--kill-on-bad-exit=1", "--quiet", "--unbuffered"]
        if let partition { argv += ["--partition", partition] }
        return argv + srunArgs + ["--"] + worker
    }

    public static func jobName(_ taskID: String) -> String { "drover-" + taskID }

    /// A license name Slurm takes: letters, digits, `_`, `-`, `.` (a pool key `a/b` becomes `a_b`).
    public static func licenseName(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
    }
}

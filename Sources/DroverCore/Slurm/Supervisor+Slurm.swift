import DroverWire
import Glibc

/// Workers through srun (SPEC 14): squeue says when a task's job waits and when it runs, and
/// scancel ends a job that srun did not take along.
extension Supervisor {
    /// The task's srun runs: squeue is asked about its job until it runs with a known id.
    func watchClusterJob(_ task: TaskDriver) {
        clusterWatched.insert(task.id)
        if !clusterTimer.isActive && !clusterPolling { clusterTimer.start(after: Self.clusterPollMs) { [weak self] in self?.pollCluster() } }
    }

    static let clusterPollMs = 300

    /// One squeue for every watched task (as a child on the loop: the loop never waits for it).
    private func pollCluster() {
        clusterWatched = clusterWatched.filter { tasks[$0]?.record.status == .running }
        guard !clusterWatched.isEmpty else { return }
        guard let squeue else {
            for id in clusterWatched { tasks[id]?.feed(.clusterJob(jobID: "?", state: "UNKNOWN (squeue not found)")) }
            clusterWatched = []
            return
        }
        let names = clusterWatched.sorted().map(LauncherSettings.jobName).joined(separator: ",")
        clusterPolling = true
        squeue.run(["--noheader", "--format=%i|%j|%T", "--name=" + names, "--user=\(getuid())"], loop: loop) { [weak self] answer in
            guard let self else { return }
            self.clusterPolling = false
            for line in answer.text.split(separator: "\n") {
                let fields = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                guard fields.count == 3, fields[1].hasPrefix("drover-") else { continue }
                let id = String(fields[1].dropFirst("drover-".count))
                guard let task = self.tasks[id], self.clusterWatched.contains(id) else { continue }
                task.feed(.clusterJob(jobID: fields[0], state: fields[2]))
                if fields[2] != "PENDING" && fields[2] != "CONFIGURING" { self.clusterWatched.remove(id) }
            }
            if !self.clusterWatched.isEmpty {
                self.clusterTimer.start(after: Self.clusterPollMs) { [weak self] in self?.pollCluster() }
            }
        }
    }

    /// scancel the task's job: by its id once squeue gave it, else by its name (this user's).
    func cancelClusterJob(_ task: TaskDriver) {
        guard let scancel else { return }
        let jobID = task.record.extra["slurm"]?.objectValue?["job_id"]?.stringValue.flatMap { Int($0) }
        let arguments = jobID.map { [String($0)] } ?? ["--name=" + LauncherSettings.jobName(task.id), "--user=\(getuid())"]
        scancel.run(arguments, loop: loop) { _ in }
    }
}

/// After a crash: the jobs of lost tasks are cancelled by their recorded ids (srun on this
/// host is killed with the rest of their remains; on a cluster the job would go on).
public enum SlurmRecovery {
    public static func cancelJobs(of lost: [TaskSnapshot], environment: [String: String], notes: inout [String]) {
        let ids = lost.compactMap { $0.extra["slurm"]?.objectValue?["job_id"]?.stringValue }.filter { Int($0) != nil }
        guard !ids.isEmpty else { return }
        guard let scancel = HelperProgram("scancel", environment: environment) else {
            notes.append("scancel not found on PATH: Slurm jobs \(ids.joined(separator: ", ")) of lost tasks were not cancelled")
            return
        }
        let answer = scancel.runNow(ids)
        notes.append(answer.succeeded ? "cancelled the Slurm jobs of lost tasks: \(ids.joined(separator: ", "))"
                                      : "scancel \(ids.joined(separator: " ")): \(answer.message)")
    }
}

/// The cluster's licenses, as `scontrol show licenses --oneliner` lists them.
public struct ClusterLicense: Sendable, Equatable {
    public var name: String
    public var total: Int
    public var used: Int
    public var free: Int

    /// "LicenseName=mock Total=2 Used=0 Free=2 Reserved=0 Remote=no", one per line.
    public static func parse(_ text: String) -> [ClusterLicense] {
        text.split(separator: "\n").compactMap { line in
            var fields: [String: String] = [:]
            for word in line.split(separator: " ") {
                let parts = word.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let name = fields["LicenseName"], let total = fields["Total"].flatMap({ Int($0) }),
                  let used = fields["Used"].flatMap({ Int($0) }) else { return nil }
            return ClusterLicense(name: name, total: total, used: used, free: fields["Free"].flatMap { Int($0) } ?? total - used)
        }
    }

    public var json: JSONObject {
        ["name": .string(name), "total": .number(Double(total)), "used": .number(Double(used)), "free": .number(Double(free))]
    }
}

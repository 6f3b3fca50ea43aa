import DroverCore
import Glibc

/// The one-node Slurm cluster the tests run on (scripts/slurm-cluster.sh start:
/// `Licenses=mock:2`), and what squeue and /proc say of drover's jobs.
public enum SlurmCluster {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String
    }

    /// The cluster answers and has the mock license; else the test fails saying how to start it.
    public static func require() throws {
        guard let scontrol = HelperProgram("scontrol", environment: ProcessEnvironment.current()),
              scontrol.runNow(["show", "licenses", "--oneliner"]).text.contains("LicenseName=mock") else {
            throw Missing(description: "no Slurm cluster with the mock license: run `bash scripts/slurm-cluster.sh start` (as root, or with sudo) first")
        }
    }

    /// Jobs ("id name state") of these tasks still in squeue.
    public static func jobs(named taskIDs: [String]) -> [String] {
        guard let squeue = HelperProgram("squeue", environment: ProcessEnvironment.current()) else { return ["squeue missing"] }
        let names = taskIDs.map(LauncherSettings.jobName).joined(separator: ",")
        return squeue.runNow(["--noheader", "--format=%i %j %T", "--name=" + names]).text.split(separator: "\n").map(String.init)
    }

    /// The mock agents of these tasks still alive, wherever Slurm ran them (here: this host).
    public static func mockAgents(of taskIDs: [String]) -> [Int32] {
        FileSystem.list("/proc").compactMap { Int32($0) }.filter { pid in
            let environment = String(decoding: (try? FileSystem.read("/proc/\(pid)/environ")) ?? [], as: UTF8.self)
            let command = String(decoding: (try? FileSystem.read("/proc/\(pid)/cmdline")) ?? [], as: UTF8.self)
            // The agent itself, not the srun whose argv names it.
            let program = command.split(separator: "\0").first.map(String.init) ?? ""
            return program.hasSuffix("/drover-mock-agent") && taskIDs.contains { environment.contains("DROVER_TASK_ID=\($0)") }
                && Processes.isAlive(pid)
        }
    }
}

import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The `processes` limit as a cgroup per task, where the machine delegates the pids
/// controller (root's cgroup.subtree_control lists it). RLIMIT_NPROC counts per user and
/// does nothing for root; pids.max counts the task's own processes, for any user.
@Suite struct CgroupLimitTests {
    static let cgroupWritable = { if case .created = SupervisorCgroup.probe() { return true }; return false }()
    static let pidsDelegated = SupervisorCgroup.delegatedControllers().contains("pids") && cgroupWritable
    static let memoryDelegated = SupervisorCgroup.delegatedControllers().contains("memory") && cgroupWritable

    @Test(.enabled(if: pidsDelegated, "needs the pids controller delegated in a writable cgroup v2 hierarchy"))
    func aForkingTaskIsHeldToItsProcessesLimit() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let manifest = """
            {"command": ["/bin/sh", "-c", "for i in $(seq 30); do sleep 1 & done; wait"], "limits": {"processes": 8}}
            {"command": ["/bin/sh", "-c", "sleep 0.2 & sleep 0.2 & wait; echo fine"], "limits": {"processes": 8}}
            """
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array(manifest.utf8))
        let run = try runDrover(["run", "tasks.jsonl", "--results", "results"], in: folder)
        #expect(run.status == 1, "\(run.stderr)")
        let tasks = try FileSystem.list(folder + "/results/tasks").map { try readJSON(folder + "/results/tasks/\($0)/task.json") }
        let forker = try #require(tasks.first { $0["manifest_line"]?.intValue == 1 })
        let modest = try #require(tasks.first { $0["manifest_line"]?.intValue == 2 })
        #expect(forker["status"] == "error")
        #expect(forker["error"]?.stringValue?.contains("the processes limit of 8 was reached") == true, "\(forker["error"] ?? .null)")
        // The shell itself is one of the eight.
        #expect(forker["peak_processes"]?.intValue == 8)
        #expect(modest["status"] == "completed")
        #expect((modest["peak_processes"]?.intValue ?? 99) <= 3)
        // Each task's folder is gone with the task, and drover's own with drover.
        for task in [forker, modest] {
            let cgroup = try #require(task["cgroup"]?.stringValue)
            #expect(!FileSystem.exists(cgroup), "\(cgroup) was left behind")
            #expect(!FileSystem.exists(FileSystem.dirname(of: cgroup)), "drover's cgroup was left behind")
        }
    }

    /// RLIMIT_AS holds each process alone; memory.max holds the task's processes together.
    /// Four processes of 40 MB each stay under a 64 MiB address-space limit one by one, but
    /// not together.
    @Test(.enabled(if: memoryDelegated, "needs the memory controller delegated in a writable cgroup v2 hierarchy"))
    func aTasksProcessesTogetherAreHeldToItsMemoryLimit() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        // Run alone under the address-space limit (no cgroup), this completes: measured.
        let hog = #"pids=; for i in 1 2 3 4; do (head -c 40000000 /dev/zero | tail -n 1 >/dev/null) & pids=\"$pids $!\"; done; "#
            + "failed=0; for p in $pids; do wait $p || failed=1; done; exit $failed"
        let manifest = """
            {"command": ["/bin/sh", "-c", "\(hog)"], "limits": {"memory": "64M"}}
            {"command": ["/bin/sh", "-c", "head -c 1000000 /dev/zero | tail -n 1 >/dev/null; echo fine"], "limits": {"memory": "64M"}}
            """
        try FileSystem.writeFile(folder + "/tasks.jsonl", Array(manifest.utf8))
        let run = try runDrover(["run", "tasks.jsonl", "--results", "results"], in: folder)
        #expect(run.status == 1, "\(run.stderr)")
        let tasks = try FileSystem.list(folder + "/results/tasks").map { try readJSON(folder + "/results/tasks/\($0)/task.json") }
        let hungry = try #require(tasks.first { $0["manifest_line"]?.intValue == 1 })
        let modest = try #require(tasks.first { $0["manifest_line"]?.intValue == 2 })
        #expect(hungry["status"] == "error")
        #expect(hungry["error"]?.stringValue?.contains("the memory limit of \(64 << 20) bytes was reached") == true, "\(hungry["error"] ?? .null)")
        // memory.peak: the task's processes together, held at the limit.
        let peak = try #require(hungry["peak_rss_kib"]?.intValue)
        #expect(peak > 40_000 && peak <= 64 * 1024, "\(peak) KiB")
        #expect(modest["status"] == "completed")
        for task in [hungry, modest] {
            let cgroup = try #require(task["cgroup"]?.stringValue)
            #expect(!FileSystem.exists(cgroup), "\(cgroup) was left behind")
        }
    }
}

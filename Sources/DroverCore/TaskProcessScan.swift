import Glibc

/// Finds live processes by the task they belong to: every child drover starts carries
/// `DROVER_TASK_ID`, and its descendants inherit it, including ones that left the task's
/// process group and session. After a supervisor died, this is the only trace of a
/// grandchild that called setsid (it was re-parented to init, out of every group).
public enum TaskProcessScan {
    /// Live processes of this user (other than this one) whose environment names one of
    /// `taskIDs`, with the task each belongs to.
    public static func find(taskIDs: Set<String>) -> [(pid: Int32, taskID: String)] {
        guard !taskIDs.isEmpty else { return [] }
        let me = getpid()
        let user = geteuid()
        var found: [(pid: Int32, taskID: String)] = []
        for name in FileSystem.list("/proc") {
            guard let pid = Int32(name), pid != me else { continue }
            var info = stat()
            guard stat("/proc/\(name)", &info) == 0, info.st_uid == user else { continue }
            // A zombie's environment reads as empty: nothing to find, nothing to kill.
            guard let environment = try? FileSystem.read("/proc/\(name)/environ") else { continue }
            for variable in environment.split(separator: 0) where variable.starts(with: prefix) {
                let id = String(decoding: variable.dropFirst(prefix.count), as: UTF8.self)
                if taskIDs.contains(id) { found.append((pid, id)) }
            }
        }
        return found
    }

    private static let prefix = Array("DROVER_TASK_ID=".utf8)
}

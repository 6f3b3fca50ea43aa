import DroverCore
import Glibc

/// The `metrics` request and `GET /metrics`: one text, read off the daemon as it is now.
extension DaemonServer {
    func metricsText() -> [UInt8] {
        var reading = DaemonMetrics.Reading()
        for id in knownTaskIDs {
            guard let task = current(id) else { continue }
            reading.tasks[DaemonMetrics.TaskCount.Key(status: task.status, reason: task.reason?.rawValue ?? ""), default: 0] += 1
        }
        reading.pools = supervisor.poolUsage
        let nowMs = loop.nowMs
        for pool in reading.pools {
            if let until = pool.cooldownUntilMs { reading.cooldownSeconds[pool.pool] = until > nowMs ? Double(until - nowMs) / 1000 : 0 }
        }
        reading.slotsInUse = supervisor.slotsInUse
        // Listing /proc/self/fd opens one more descriptor, which is not counted.
        reading.openDescriptors = FileSystem.list("/proc/self/fd").count - 1
        reading.writerBacklogBytes = store.unwrittenBytes
        return metrics.render(reading)
    }
}

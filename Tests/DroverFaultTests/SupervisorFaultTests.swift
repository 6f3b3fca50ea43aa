import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Faults of the supervisor's surroundings: the disk under its state folder fills up, and
/// the supervisor itself is killed with SIGKILL and started again.
@Suite struct SupervisorFaultTests {
    @Test(.enabled(if: geteuid() == 0, "mounting a small tmpfs for the disk-full fault needs root"))
    func theDiskFullUnderTheStateFolder() throws {
        let d = try FaultDaemon()
        let (mounted, why) = d.mountStateTmpfs(size: "2m")
        guard mounted else {
            Issue.record(Comment(rawValue: why))
            return
        }
        try d.start()
        let healthy = try HealthyTasks.launch(on: d)
        let fault = try d.launch("@message waiting for the disk to fill\n@await-prompt\n@flood 200 1000\n@result written after all")
        #expect(eventually { d.isRunning(fault) })
        let filler = d.state + "/filler"
        let filled = fillDisk(filler)
        #expect(filled > 0)
        // The worker writes while nothing can be stored, and ends.
        let session = try #require(try d.task(fault)["session_id"]?.stringValue)
        _ = try d.ok(["continue", session, "--prompt", "go"])
        #expect(eventually { (try? d.stats())?["running"]?.intValue == 3 }, "the fault task did not end while the disk was full")
        #expect(d.isRunning(fault), "its end could not be written yet")
        unlink(filler)
        // What the full disk refused is written once there is room, with nothing else to write.
        #expect(eventually(withinMs: 2000) { d.status(fault) == "completed" }, "the refused writes were not tried again")
        try healthy.release(on: d)
        try FaultCheck(d, expected: [fault: .completed(result: "written after all")], healthy: healthy).run()
    }

    @Test func theSupervisorKilledWithSIGKILLAndRestarted() throws {
        let d = try FaultDaemon(settings: #""providerConcurrency": { "mock": 4 }"#)
        try d.start()
        let running = try HealthyTasks.launch(on: d)
        let detachedFile = d.folder + "/detached.pid"
        let groupFile = d.folder + "/grandchild.pid"
        let fault = try d.launch("@spawn-detached \(detachedFile)\n@spawn-grandchild \(groupFile)\n@message busy\n@hang")
        // These wait for a slot (4 per pool): they must run once a new daemon takes over.
        let queued = try (0..<2).map { try d.launch("@message after restart\n@result after restart \($0)") }
        #expect(eventually { FileSystem.exists(detachedFile) && FileSystem.exists(groupFile) && d.isRunning(fault) })
        #expect(queued.allSatisfy { d.status($0) == "pending" })
        let detached = try #require(Int32(readText(detachedFile).split(separator: "\n").first ?? ""))
        let grandchild = try #require(Int32(readText(groupFile).split(separator: "\n").first ?? ""))
        let killed = try #require(d.pid)
        kill(killed, SIGKILL)
        #expect(eventually { !Processes.isAlive(killed) })
        // The next command starts a new daemon on the folder, which recovers it.
        try d.waitEnded(queued)
        #expect(d.pid != killed)
        var expected: [String: Expected] = [fault: .error("lost", "the supervisor stopped while it ran")]
        for id in running.ids { expected[id] = .error("lost") }
        for (i, id) in queued.enumerated() { expected[id] = .completed(result: "after restart \(i)") }
        try FaultCheck(d, expected: expected, leftovers: [detached, grandchild]).run()
    }
}

/// Writes zeros to `path` until the filesystem is full; returns the bytes written.
private func fillDisk(_ path: String) -> Int {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    let block = [UInt8](repeating: 0, count: 4096)
    var total = 0
    while true {
        let n = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        total += n
    }
    return total
}

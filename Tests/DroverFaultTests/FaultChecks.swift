import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// How a task must end.
struct Expected {
    let status: String
    let reason: String
    /// The exact result text (completed tasks).
    var result: String?
    /// Words the recorded error must contain.
    var errorContains: String?

    static func completed(_ reason: String = "result", result: String? = nil) -> Expected {
        Expected(status: "completed", reason: reason, result: result)
    }

    static func error(_ reason: String, _ contains: String? = nil) -> Expected {
        Expected(status: "error", reason: reason, errorContains: contains)
    }

    static func cancelled(_ reason: String, _ contains: String? = nil) -> Expected {
        Expected(status: "cancelled", reason: reason, errorContains: contains)
    }
}

/// Healthy tasks that run through a fault: each sends a message, then waits for a
/// follow-up prompt, which the test sends once the fault is over.
struct HealthyTasks {
    let ids: [String]

    static func prompt(_ index: Int) -> String { "@message healthy \(index) at work\n@busy 200ms\n@await-prompt\n@result healthy \(index)" }

    static func launch(on daemon: FaultDaemon, count: Int = 3, sourceLocation: SourceLocation = #_sourceLocation) throws -> HealthyTasks {
        let ids = try (0..<count).map { try daemon.launch(prompt($0), sourceLocation: sourceLocation) }
        #expect(eventually { ids.allSatisfy(daemon.isRunning) }, "healthy tasks did not start", sourceLocation: sourceLocation)
        return HealthyTasks(ids: ids)
    }

    /// Each one's follow-up prompt, delivered to its running session.
    func release(on daemon: FaultDaemon, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for id in ids {
            let session = try #require(try daemon.task(id)["session_id"]?.stringValue, sourceLocation: sourceLocation)
            let delivered = try daemon.ok(["continue", session, "--prompt", "the fault is over"], sourceLocation: sourceLocation)
            #expect(delivered == id, "healthy task \(id) was no longer running to take its prompt", sourceLocation: sourceLocation)
        }
    }

    var expected: [String: Expected] {
        Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, Expected.completed(result: "healthy \($0)")) })
    }
}

/// The checks that follow every fault, written once:
///  1. every task ends in the right state with the right reason (healthy ones complete, and
///     they were running while the fault happened);
///  2. every slot comes back (the pools show nothing in use);
///  3. no process of any task survives (worker, its group, grandchildren that called
///     setsid), and the supervisor has no child left, zombie or not;
///  4. the supervisor's open descriptors are back at their count from before;
///  5. every file of every task is complete and parses.
struct FaultCheck {
    let daemon: FaultDaemon
    /// Every task of the test and how it must end.
    let expected: [String: Expected]
    /// Tasks that must have been running while the faulty ones started and ended.
    var healthy: [String] = []
    var faulty: [String] = []
    /// Pids the test learnt of (grandchildren): they must be gone too.
    var leftovers: [Int32] = []
    var sourceLocation: SourceLocation

    init(_ daemon: FaultDaemon, expected: [String: Expected], healthy: HealthyTasks? = nil, faulty: [String] = [], leftovers: [Int32] = [],
         sourceLocation: SourceLocation = #_sourceLocation)
    {
        self.daemon = daemon
        var all = expected
        if let healthy { for (id, expectation) in healthy.expected where all[id] == nil { all[id] = expectation } }
        self.expected = all
        self.healthy = healthy?.ids ?? []
        self.faulty = faulty.isEmpty ? Array(expected.keys) : faulty
        self.leftovers = leftovers
        self.sourceLocation = sourceLocation
    }

    func run() throws {
        try daemon.waitEnded(Array(expected.keys), sourceLocation: sourceLocation)
        try statesAndReasons()
        try slotsCameBack()
        nothingSurvives()
        descriptorsAreBack()
        try filesAreComplete()
    }

    private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        #expect(condition, "\(message())", sourceLocation: sourceLocation)
    }

    // MARK: 1. states

    private func statesAndReasons() throws {
        for (id, expectation) in expected.sorted(by: { $0.key < $1.key }) {
            let task = try daemon.task(id)
            let status = task["status"]?.stringValue ?? "?"
            let reason = task["reason"]?.stringValue ?? "?"
            let error = task["error"]?.stringValue ?? ""
            check(status == expectation.status && reason == expectation.reason,
                  "\(id): \(status)(\(reason)), expected \(expectation.status)(\(expectation.reason)); error: \(error)")
            if let words = expectation.errorContains { check(error.contains(words), "\(id): error \"\(error)\" does not say \"\(words)\"") }
            for field in ["created_at", "ended_at"] { check(task[field]?.stringValue != nil, "\(id): task.json has no \(field)") }
            let resultFile = daemon.state + "/tasks/\(id)/result.md"
            if status == "completed" {
                check(FileSystem.exists(resultFile), "\(id): completed without result.md")
                if let result = expectation.result { check(readText(resultFile) == result, "\(id): result \"\(readText(resultFile).prefix(200))\", expected \"\(result)\"") }
            } else {
                check(!FileSystem.exists(resultFile), "\(id): \(status) but has a result.md")
            }
        }
        // The healthy tasks really ran through the fault.
        for h in healthy {
            guard let healthy = TaskSnapshot(json: try daemon.task(h)), let hStart = healthy.startedMs, let hEnd = healthy.endedMs else { continue }
            for f in faulty {
                guard let fault = TaskSnapshot(json: try daemon.task(f)), let fStart = fault.startedMs, let fEnd = fault.endedMs else { continue }
                check(hStart <= fStart && fEnd <= hEnd, "healthy task \(h) (\(hStart)-\(hEnd)) was not running through fault task \(f) (\(fStart)-\(fEnd))")
            }
        }
    }

    // MARK: 2. slots

    func slotsCameBack() throws {
        let stats = try daemon.stats()
        check(stats["running"]?.intValue == 0 && stats["pending"]?.intValue == 0 && stats["slots_in_use"]?.intValue == 0,
              "slots still in use once every task ended: \(JSONWriter.string(.object(stats)))")
        for pool in stats["pools"]?.arrayValue ?? [] {
            let object = pool.objectValue ?? JSONObject()
            check(object["running"]?.intValue == 0 && object["waiting"]?.intValue == 0, "pool not empty: \(JSONWriter.string(pool))")
        }
    }

    // MARK: 3. processes

    func nothingSurvives() {
        guard let supervisor = daemon.pid else { return check(false, "no daemon pid in daemon.lock") }
        let ids = Set(expected.keys)
        let workers = expected.keys.compactMap { (try? daemon.task($0))?["pid"]?.intValue.map { Int32($0) } }
        var report = ""
        let clean = eventually(withinMs: 3000) {
            let table = ProcessTable()
            var problems: [String] = []
            for pid in workers + leftovers where table.entries[pid] != nil {
                let entry = table.entries[pid]!
                problems.append("pid \(pid) (\(entry.name), state \(entry.state), parent \(entry.ppid)) still exists")
            }
            for worker in workers {
                let members = table.entries.values.filter { $0.pgrp == worker && !$0.isZombie }
                if !members.isEmpty { problems.append("group \(worker) still has \(members.map(\.pid))") }
            }
            for (entry, id) in table.liveProcesses(ofTasks: ids) {
                problems.append("pid \(entry.pid) (\(entry.name)) of task \(id) is alive (parent \(entry.ppid), group \(entry.pgrp))")
            }
            // The supervisor's warden (drover-warden) is the one child it keeps for its life.
            let children = table.children(of: supervisor).filter { $0.name != "drover-warden" }
            let zombies = children.filter(\.isZombie)
            if !zombies.isEmpty { problems.append("zombie children of the supervisor: \(zombies.map { "\($0.pid) \($0.name)" })") }
            if children.count > zombies.count { problems.append("live children of the supervisor: \(children.filter { !$0.isZombie }.map { "\($0.pid) \($0.name)" })") }
            report = problems.joined(separator: "; ")
            return problems.isEmpty
        }
        check(clean, "processes left behind: \(report)")
    }

    // MARK: 4. descriptors

    /// Compared with the daemon's own baseline (taken once it was up, before its first task),
    /// so a daemon restarted by the test is held to its own figure, not to its predecessor's.
    private func descriptorsAreBack() {
        guard let supervisor = daemon.pid else { return }
        guard let baseline = (try? daemon.stats())?["baseline_fds"]?.intValue else { return check(false, "stats has no baseline_fds") }
        var count = -1
        let back = eventually(withinMs: 3000) {
            count = openDescriptors(of: supervisor)
            return count == baseline
        }
        let listing = FileSystem.list("/proc/\(supervisor)/fd").map { fd -> String in
            var target = [CChar](repeating: 0, count: 512)
            let n = readlink("/proc/\(supervisor)/fd/\(fd)", &target, 511)
            return "\(fd)->" + (n > 0 ? String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?")
        }
        check(back, "the supervisor has \(count) descriptors open, \(baseline) before its first task: \(listing.sorted())")
    }

    // MARK: 5. files

    private func filesAreComplete() throws {
        let state = daemon.state
        let folders = Set(FileSystem.list(state + "/tasks"))
        check(folders == Set(expected.keys), "task folders \(folders.sorted()) are not the tasks launched \(expected.keys.sorted())")
        let allowed: Set<String> = ["task.json", "transcript.jsonl", "stderr.log", "result.md", "prompt.txt", "work"]
        var transcriptLinesBySession: [String: Int] = [:]
        for id in expected.keys.sorted() {
            let folder = state + "/tasks/\(id)"
            for name in FileSystem.list(folder) where !allowed.contains(name) { check(false, "\(id): unexpected file \(name) (a half-written one?)") }
            let task = try daemon.task(id)
            let session = task["session_id"]?.stringValue ?? ""
            guard task["started_at"]?.stringValue != nil else { continue }  // never ran: no transcript
            // Files appear with their first line: a raw command that printed nothing has no
            // transcript.jsonl, a worker that wrote nothing to stderr no stderr.log.
            let raw = task["agent"]?.stringValue == "command" || task["agent"]?.stringValue == "sh"
            let transcript = folder + "/transcript.jsonl"
            let lines = raw && !FileSystem.exists(transcript) ? [] : lineObjects(transcript, "\(id) transcript")
            for line in lines where line["t"]?.intValue == nil || line["dir"]?.stringValue == nil || line["type"]?.stringValue == nil {
                check(false, "\(id): transcript line without t, dir or type: \(JSONWriter.string(.object(line)).prefix(200))")
            }
            if !raw {
                check(lines.first?["type"]?.stringValue == "start", "\(id): the transcript does not begin with the start frame")
            }
            transcriptLinesBySession[session, default: 0] += lines.count
        }
        // Every transcript line is in its session's file too.
        for (session, count) in transcriptLinesBySession {
            let lines = lineObjects(state + "/sessions/\(session).jsonl", "session \(session)")
            check(lines.count == count, "session \(session) has \(lines.count) lines, its tasks' transcripts \(count)")
        }
        // events.jsonl: for each task, pending first, then at most one running, then exactly
        // one terminal event, which agrees with task.json.
        var events: [String: [JSONObject]] = [:]
        for event in lineObjects(state + "/events.jsonl", "events.jsonl") {
            events[event["task_id"]?.stringValue ?? "", default: []].append(event)
        }
        for (id, expectation) in expected {
            let statuses = (events[id] ?? []).map { $0["status"]?.stringValue ?? "?" }
            let terminal = ["completed", "error", "cancelled"]
            let middle = statuses.dropFirst().dropLast()
            let wellFormed = statuses.first == "pending" && statuses.count >= 2 && terminal.contains(statuses.last!)
                && middle.allSatisfy { $0 == "running" } && middle.count <= 1
            check(wellFormed, "\(id): events \(statuses)")
            if let last = events[id]?.last {
                check(last["status"]?.stringValue == expectation.status && last["reason"]?.stringValue == expectation.reason,
                      "\(id): last event \(JSONWriter.string(.object(last))) disagrees with \(expectation.status)(\(expectation.reason))")
            }
        }
        let leftovers = temporaryFiles(under: state)
        check(leftovers.isEmpty, "temporary files left: \(leftovers)")
        if FileSystem.exists(state + "/summary.json") {
            check((try? readJSON(state + "/summary.json")) != nil, "summary.json does not parse")
        }
    }

    /// The JSON objects of a JSON-lines file; a line that is not one, or a last line without
    /// its newline, fails the check.
    private func lineObjects(_ path: String, _ name: String) -> [JSONObject] {
        let (objects, problems) = readJSONLines(path)
        for problem in problems.prefix(5) { check(false, "\(name): \(problem)") }
        return objects
    }
}

/// The JSON objects of a JSON-lines file, and what is wrong with it: a line that is not an
/// object, a last line without its newline, or a file that cannot be read.
func readJSONLines(_ path: String) -> (objects: [JSONObject], problems: [String]) {
    guard let bytes = try? FileSystem.read(path) else { return ([], ["cannot read \(path)"]) }
    var objects: [JSONObject] = []
    var problems: [String] = []
    if let last = bytes.last, last != 0x0A { problems.append("the last line is cut (no newline at the end)") }
    // Split with memchr and parsed in place: the flood leaves 200 MB of lines to read.
    bytes.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return }
        var start = 0
        var number = 0
        while start < buffer.count, let newline = memchr(base + start, 0x0A, buffer.count - start) {
            let end = UnsafePointer<UInt8>(newline.assumingMemoryBound(to: UInt8.self)) - base
            let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
            number += 1
            if let object = (try? JSONParser.parse(buffer: line))?.objectValue {
                objects.append(object)
            } else {
                problems.append("line \(number) does not parse: \(String(decoding: line.prefix(200), as: UTF8.self))")
            }
            start = end + 1
        }
    }
    return (objects, problems)
}

/// Every `*.tmp` under `path`: a write that was cut short and never cleaned up.
func temporaryFiles(under path: String) -> [String] {
    var found: [String] = []
    for name in FileSystem.list(path) {
        let full = path + "/" + name
        if name.hasSuffix(".tmp") { found.append(full) }
        if FileSystem.isDirectory(full) { found += temporaryFiles(under: full) }
    }
    return found
}

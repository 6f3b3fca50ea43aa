import Dispatch
import DroverCore
import DroverDaemon
import DroverTestSupport
import DroverWire
import Glibc
import Synchronization
import Testing

/// SPEC 16.1-16.3 under repeated crashes: the supervisor is SIGKILLed at random moments while
/// short tasks are launched, started and ended, then started again on the same folder. Each
/// task appends its id to a file outside drover's folders, so that file tells how many times
/// each one really ran. The random draws come from a printed seed (DROVER_CRASH_SEED replays
/// them; the timing of the machine is not replayed).
@Suite(.serialized) struct CrashTests {
    static let shAgent = #""sh": { "command": ["/bin/sh", "-c", "{prompt}"], "protocol": "raw", "provider": "local" }"#

    @Test func theDaemonSIGKILLedAtRandomMomentsWhileTasksLaunchAndEnd() throws {
        let seed = crashSeed("daemon crash test")
        var random = SeededGenerator(seed: seed)
        let d = try FaultDaemon(settings: #""providerConcurrency": { "mock": 8, "local": 3 }"#, agents: Self.shAgent)
        let sideLog = d.folder + "/side.log"
        let prompt = "echo $DROVER_TASK_ID >> \(sideLog)"
        let state = StateFolder(explicit: d.state, environment: [:])
        let launches = LaunchRecord()
        var wardens: [Int32] = []
        var rounds = 0
        while rounds < 10 || launches.acknowledgedCount < 300 {
            try #require(rounds < 60, "only \(launches.acknowledgedCount) launches acknowledged in \(rounds) rounds (seed \(seed))")
            let daemon = try startServing(d, round: rounds)
            var reaped = false
            defer { if !reaped { kill(daemon, SIGKILL); _ = reap(daemon) } }
            let killAfterMs = Int.random(in: 50...500, using: &random)
            let launchers = DispatchGroup()
            for index in 0..<3 {
                DispatchQueue(label: "launcher \(index)").async(group: launchers) {
                    launchUntilTheDaemonDies(state: state, prompt: prompt, into: launches)
                }
            }
            usleep(UInt32(killAfterMs) * 1000)
            wardens += ProcessTable().children(of: daemon).filter { $0.name == "drover-warden" }.map(\.pid)
            kill(daemon, SIGKILL)
            let end = reap(daemon)
            reaped = true
            try #require(end.killedBySIGKILL, "the daemon of round \(rounds) ended by itself (\(end)) before the kill: \(readText(d.folder + "/serve-\(rounds).log.err").suffix(2000))")
            // A dead daemon's socket refuses at once: the launchers are done within moments.
            try #require(launchers.wait(timeout: .now() + 10) == .success, "launchers still waiting 10 s after the daemon died")
            rounds += 1
        }
        let unexpected = launches.unexpected
        #expect(unexpected.isEmpty, "launches refused for a reason other than the daemon's death: \(unexpected.prefix(5))")

        // The next command starts a new daemon, which recovers the folder; then every task ends.
        let waited = try d.run(["wait", "--all", "--timeout", "60s"])
        try #require(waited.status == 0 || waited.status == 1, "drover wait --all exited \(waited.status): \(waited.stderr)")

        let acknowledged = launches.acknowledged
        let tasks = try TaskFolder.readAll(d.state)
        let journal = JournalTasks(d.state + "/events.jsonl")
        let side = SideLog(sideLog)
        var problems = journal.problems + side.problems
        problems += endsAgree(tasks, journal)
        problems += sideEffectsAgree(tasks, side)
        problems += filesAreWhole(d.state)
        for id in acknowledged where tasks[id]?.record == nil {
            problems.append("\(id): its launch was acknowledged, and it has no task.json (\(FileSystem.isDirectory(d.state + "/tasks/\(id)") ? "an empty folder" : "no folder"))")
        }
        for (id, task) in tasks {
            guard let record = task.record else {
                // The daemon died between the folder and its task.json: nothing was acknowledged.
                if journal.tasks[id] != nil || side.count(id) > 0 { problems.append("\(id): has no task.json, yet it is in the journal or ran") }
                continue
            }
            let ending = "\(record.status)(\(record.reason))"
            if ending != "completed(exit)" && ending != "error(lost)" { problems.append("\(id): ended \(ending): \(record.error)") }
        }
        report(problems, seed: seed)

        let ended = tasks.compactMapValues(\.record)
        let lost = ended.values.filter { $0.reason == "lost" }.count
        print("""
            daemon crash test (seed \(seed)): \(rounds) rounds, \(rounds) kills, \(ended.count) tasks, \
            \(acknowledged.count) launches acknowledged, \(ended.count - Set(acknowledged).intersection(ended.keys).count) recorded \
            without an answer, \(launches.refusedCount) refused as the daemon died, \
            \(ended.values.filter { $0.status == "completed" }.count) completed, \(lost) ended lost; side log \(side.ids.count) lines, \
            \(side.duplicates.count) duplicates, \(journal.tasks.values.filter { $0.ends > 1 }.count) double ends, \
            \(ended.keys.filter { (journal.tasks[$0]?.ends ?? 0) == 0 }.count) ends missing from the journal, \
            \(acknowledged.filter { tasks[$0]?.record == nil }.count) acknowledged launches lost
            """)

        // No process of any task, and no warden of a killed daemon, is left.
        var expected: [String: Expected] = [:]
        for (id, record) in ended { expected[id] = Expected(status: record.status, reason: record.reason) }
        let check = FaultCheck(d, expected: expected, leftovers: wardens)
        try check.slotsCameBack()
        check.nothingSurvives()
    }

    @Test func aBatchSIGKILLedAndResumedAgainAndAgain() throws {
        let seed = crashSeed("batch crash test")
        var random = SeededGenerator(seed: seed)
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let rowCount = 300
        let side = folder + "/side.log"
        let manifest = folder + "/tasks.jsonl"
        let config = folder + "/config.jsonc"
        let results = folder + "/results"
        let row = #"{"command": ["/bin/sh", "-c", "echo $DROVER_TASK_ID >> \#(side)"]}"#
        try FileSystem.writeFile(manifest, Array(String(repeating: row + "\n", count: rowCount).utf8))
        try FileSystem.writeFile(config, Array(#"{ "background_task": { "providerConcurrency": { "local": 3 } } }"#.utf8))
        let arguments = ["run", manifest, "--results", results, "--config", config]

        var kills = 0
        var runs = 0
        var wardens: [Int32] = []
        /// Tasks that had started and not ended when a run was killed, with the kill's number.
        var runningAtKill: [String: Int] = [:]
        var rowsDoneAtKills: [Int] = []
        // Random moments across the run: when the side log reaches each of these rows, plus up
        // to 3 ms (a run that starts past its point is killed as it starts).
        let killPoints = (0..<6).map { _ in Int.random(in: 0..<(rowCount * 9 / 10), using: &random) }.sorted()
        while kills < killPoints.count {
            try #require(runs < 20, "only \(kills) of \(runs) runs were still running when killed (seed \(seed))")
            let output = folder + "/run-\(runs)"
            let pid = try startDrover(arguments + (runs == 0 ? [] : ["--resume"]), output: output)
            var reaped = false
            defer { if !reaped { kill(pid, SIGKILL); _ = reap(pid) } }
            runs += 1
            let target = killPoints[kills]
            let jitterUs = UInt32.random(in: 0...3000, using: &random)
            let reached = eventually(withinMs: 20_000) { SideLog(side).ids.count >= target || Processes.entry(pid)?.state == "Z" }
            try #require(reached, "run \(runs) made no progress towards \(target) rows in 20 s")
            usleep(jitterUs)
            wardens += ProcessTable().children(of: pid).filter { $0.name == "drover-warden" }.map(\.pid)
            kill(pid, SIGKILL)
            let end = reap(pid)
            reaped = true
            guard end.killedBySIGKILL else {
                // It ended before its kill point: the next run tries again, within the bound above.
                try #require(end.exitStatus <= 1, "drover run exited \(end.exitStatus): \(readText(output + ".err").suffix(2000))")
                continue
            }
            kills += 1
            rowsDoneAtKills.append(SideLog(side).ids.count)
            // Running: started by the journal, and no terminal task.json (one that has its end
            // on disk but not yet in the journal had ended).
            let files = try TaskFolder.readAll(results)
            for (id, task) in JournalTasks(results + "/events.jsonl").tasks where task.hasStartedAndNotEnded {
                if !(files[id]?.record.map { isTerminal($0.status) } ?? false) { runningAtKill[id] = runningAtKill[id] ?? kills }
            }
            for (id, task) in files where task.record?.status == "running" { runningAtKill[id] = runningAtKill[id] ?? kills }
        }
        let last = try runDrover(arguments + ["--resume"], in: folder)
        try #require(last.status == 0 || last.status == 1, "the last run exited \(last.status): \(last.stderr)")

        let tasks = try TaskFolder.readAll(results)
        let journal = JournalTasks(results + "/events.jsonl")
        let sideLog = SideLog(side)
        var problems = journal.problems + sideLog.problems
        problems += endsAgree(tasks, journal)
        problems += sideEffectsAgree(tasks, sideLog)
        problems += filesAreWhole(results)
        for (id, kill) in runningAtKill.sorted(by: { $0.key < $1.key }) {
            let record = tasks[id]?.record
            if record?.status != "error" || record?.reason != "lost" {
                problems.append("\(id) was running at kill \(kill) and ended \(record.map { "\($0.status)(\($0.reason))" } ?? "without task.json"), not error(lost)")
            }
        }
        // Each row is one task, ended once: a row that may have run is never run again.
        var tasksOfLine: [Int: [String]] = [:]
        for id in journal.order {
            guard let line = journal.tasks[id]?.manifestLine, journal.tasks[id]?.manifestRow != nil else {
                problems.append("\(id): its first journal line lacks manifest_line or manifest_row")
                continue
            }
            tasksOfLine[line, default: []].append(id)
        }
        for line in 1...rowCount {
            let ids = tasksOfLine[line] ?? []
            let endings = ids.map { id in tasks[id]?.record.map { "\(id) \($0.status)(\($0.reason))" } ?? "\(id) without task.json" }
            if ids.count != 1 {
                let runs = ids.map(sideLog.count).reduce(0, +)
                problems.append("line \(line) ran as \(ids.count) tasks: \(endings); the side log has its command \(runs) time(s)")
            }
            for id in ids where tasks[id]?.record.map({ !["completed", "error", "cancelled"].contains($0.status) }) ?? true {
                problems.append("line \(line): \(endings) is not terminal")
            }
        }
        problems += summaryAgrees(results, rowCount: rowCount, tasksOfLine: tasksOfLine, tasks: tasks, exitStatus: last.status)
        report(problems, seed: seed)

        let ended = tasks.compactMapValues(\.record)
        print("""
            batch crash test (seed \(seed)): \(rowCount) rows, \(runs + 1) runs, \(kills) kills (rows done at each: \(rowsDoneAtKills)), \
            \(ended.count) tasks, \(ended.values.filter { $0.status == "completed" }.count) completed, \
            \(ended.values.filter { $0.reason == "lost" }.count) ended lost, \(runningAtKill.count) running at a kill; side log \
            \(sideLog.ids.count) lines, \(sideLog.duplicates.count) duplicates, \(journal.tasks.values.filter { $0.ends > 1 }.count) double ends, \
            \(ended.keys.filter { (journal.tasks[$0]?.ends ?? 0) == 0 }.count) ends missing from the journal, \
            \(tasksOfLine.values.filter { $0.count > 1 }.count) rows run again
            """)

        // Nothing of any run is left: no task's process, no warden of a killed run.
        var left = ""
        let clean = eventually(withinMs: 3000) {
            let table = ProcessTable()
            let processes = table.liveProcesses(ofTasks: Set(tasks.keys)).map { "pid \($0.0.pid) (\($0.0.name)) of \($0.1)" }
            let livingWardens = wardens.filter { table.entries[$0].map { !$0.isZombie } ?? false }.map { "warden \($0)" }
            left = (processes + livingWardens).joined(separator: ", ")
            return left.isEmpty
        }
        #expect(clean, "left behind: \(left)")
    }
}

// MARK: the daemon's rounds

/// Starts `drover serve` on the fault daemon's folder as a child of the test (so that it is
/// reaped here), and waits until it answers.
private func startServing(_ d: FaultDaemon, round: Int) throws -> pid_t {
    let log = d.folder + "/serve-\(round).log"
    let pid = try startDrover(["serve", "--state-dir", d.state, "--config", d.config], output: log)
    let answered = eventually(withinMs: 10_000) {
        (try? d.call(["type": "ping"]))?["pid"]?.intValue == Int(pid) || Processes.entry(pid)?.state == "Z"
    }
    guard answered, Processes.entry(pid)?.state != "Z" else {
        kill(pid, SIGKILL)
        _ = reap(pid)
        throw TestFailure("the daemon of round \(round) did not answer: \(readText(log + ".err").suffix(2000))")
    }
    return pid
}

/// Launches tasks one after another on the control socket until the daemon stops answering.
private func launchUntilTheDaemonDies(state: StateFolder, prompt: String, into record: LaunchRecord) {
    while true {
        do {
            let client = try ControlClient.connect(state: state, autostart: false)
            let answer = try client.call(["type": "launch", "agent": "sh", "prompt": .string(prompt)])
            guard let id = answer["task_id"]?.stringValue, TaskIdentifiers.isTaskID(id) else {
                return record.unexpected("an answer without a task id: \(JSONWriter.string(.object(answer)))")
            }
            record.acknowledged(id)
        } catch {
            // What a client sees of a daemon that died: the connection lost, or refused.
            let message = "\(error)"
            let deathSigns = ["no drover daemon answers", "lost the connection to the daemon", "the daemon closed the connection without an answer"]
            if deathSigns.contains(where: { message.hasPrefix($0) }) { return record.refused() }
            return record.unexpected(message)
        }
    }
}

/// What the launchers of every round learnt, shared between their threads.
final class LaunchRecord: Sendable {
    private struct Counts {
        var acknowledged: [String] = []
        var refused = 0
        var unexpected: [String] = []
    }

    private let counts = Mutex(Counts())

    func acknowledged(_ id: String) { counts.withLock { $0.acknowledged.append(id) } }
    func refused() { counts.withLock { $0.refused += 1 } }
    func unexpected(_ message: String) { counts.withLock { $0.unexpected.append(message) } }

    var acknowledged: [String] { counts.withLock { $0.acknowledged } }
    var acknowledgedCount: Int { counts.withLock { $0.acknowledged.count } }
    var refusedCount: Int { counts.withLock { $0.refused } }
    var unexpected: [String] { counts.withLock { $0.unexpected } }
}

// MARK: reading what is left

/// A task folder: its task.json (nil when the supervisor died before writing it).
struct TaskFolder {
    struct Record {
        let status: String
        let reason: String
        let error: String
    }

    let record: Record?

    /// Every folder under `root/tasks`; a task.json that does not parse fails the test.
    static func readAll(_ root: String) throws -> [String: TaskFolder] {
        var folders: [String: TaskFolder] = [:]
        for id in FileSystem.list(root + "/tasks") {
            let path = root + "/tasks/\(id)/task.json"
            guard FileSystem.exists(path) else {
                folders[id] = TaskFolder(record: nil)
                continue
            }
            let task = try readJSON(path)
            folders[id] = TaskFolder(record: Record(status: task["status"]?.stringValue ?? "?", reason: task["reason"]?.stringValue ?? "none",
                                                    error: task["error"]?.stringValue ?? ""))
        }
        return folders
    }
}

/// events.jsonl, grouped by task, in the order tasks first appear.
struct JournalTasks {
    struct Task {
        var states: [(status: String, reason: String)] = []
        /// A batch row's identity, from the task's first line.
        var manifestLine: Int?
        var manifestRow: String?
        var ends: Int { states.filter { isTerminal($0.status) }.count }
        /// Its last line says it started: it may have been running when the supervisor died.
        var hasStartedAndNotEnded: Bool { states.last?.status == "running" }
    }

    private(set) var tasks: [String: Task] = [:]
    private(set) var order: [String] = []
    private(set) var problems: [String] = []

    init(_ path: String) {
        guard FileSystem.exists(path) else { return }
        let (lines, problems) = readJSONLines(path)
        self.problems = problems.prefix(5).map { "events.jsonl: \($0)" }
        for line in lines {
            guard let id = line["task_id"]?.stringValue, let status = line["status"]?.stringValue else {
                self.problems.append("events.jsonl: a line without task_id or status: \(JSONWriter.string(.object(line)))")
                continue
            }
            if tasks[id] == nil {
                order.append(id)
                tasks[id] = Task(manifestLine: line["manifest_line"]?.intValue, manifestRow: line["manifest_row"]?.stringValue)
            }
            tasks[id]!.states.append((status, line["reason"]?.stringValue ?? "none"))
        }
    }
}

/// The ids the tasks wrote to the side log, one a line.
struct SideLog {
    let ids: [String]
    private let counts: [String: Int]
    var duplicates: [String] { counts.filter { $0.value > 1 }.keys.sorted() }
    var problems: [String] { duplicates.prefix(10).map { "\($0) ran \(counts[$0]!) times (side log)" } }

    init(_ path: String) {
        ids = readText(path).split(separator: "\n").map(String.init)
        counts = ids.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    func count(_ id: String) -> Int { counts[id] ?? 0 }
}

private func isTerminal(_ status: String) -> Bool { ["completed", "error", "cancelled"].contains(status) }

// MARK: checks

/// Every task has exactly one terminal journal line, its last, agreeing with its terminal
/// task.json, and every task of the journal has a task.json.
private func endsAgree(_ tasks: [String: TaskFolder], _ journal: JournalTasks) -> [String] {
    var problems: [String] = []
    for id in Set(journal.order).union(tasks.compactMap { $0.value.record == nil ? nil : $0.key }).sorted() {
        let states = journal.tasks[id]?.states ?? []
        let shown = states.map { "\($0.status)(\($0.reason))" }
        guard let record = tasks[id]?.record else {
            problems.append("\(id): in the journal (\(shown)) without a task.json")
            continue
        }
        guard isTerminal(record.status) else {
            problems.append("\(id): task.json left \(record.status) (journal \(shown))")
            continue
        }
        let ends = states.filter { isTerminal($0.status) }
        if ends.count != 1 || !isTerminal(states.last?.status ?? "") {
            problems.append("\(id): \(ends.count) terminal journal lines, \(shown); task.json \(record.status)(\(record.reason))")
        } else if ends[0].status != record.status || ends[0].reason != record.reason {
            problems.append("\(id): journal ends \(shown.last!), task.json \(record.status)(\(record.reason))")
        }
    }
    return problems
}

/// The side log against the records: each id is a task's, and ran at most once; a task that
/// completed ran exactly once, and a lost one at most once.
private func sideEffectsAgree(_ tasks: [String: TaskFolder], _ side: SideLog) -> [String] {
    var problems: [String] = []
    for id in Set(side.ids) where tasks[id]?.record == nil { problems.append("\(id) ran (side log) and has no task.json") }
    for (id, task) in tasks where task.record?.status == "completed" && side.count(id) != 1 {
        problems.append("\(id) completed, and the side log has it \(side.count(id)) times")
    }
    return problems
}

/// No `*.tmp` is left, and every JSON-lines file parses to its last line's newline.
private func filesAreWhole(_ root: String) -> [String] {
    var problems = temporaryFiles(under: root).map { "left behind: \($0)" }
    var files = FileSystem.list(root + "/sessions").map { root + "/sessions/" + $0 }
    for id in FileSystem.list(root + "/tasks") where FileSystem.exists(root + "/tasks/\(id)/transcript.jsonl") {
        files.append(root + "/tasks/\(id)/transcript.jsonl")
    }
    for file in files where file.hasSuffix(".jsonl") {
        problems += readJSONLines(file).problems.prefix(3).map { "\(file): \($0)" }
    }
    return problems
}

/// summary.json of the last run: one row per manifest line naming its task and its end,
/// and counts that add up to those rows.
private func summaryAgrees(_ results: String, rowCount: Int, tasksOfLine: [Int: [String]], tasks: [String: TaskFolder], exitStatus: Int32) -> [String] {
    guard let summary = try? readJSON(results + "/summary.json") else { return ["summary.json is missing or does not parse"] }
    var problems: [String] = []
    let rows = summary["tasks"]?.arrayValue?.compactMap(\.objectValue) ?? []
    var seen: Set<Int> = []
    var byStatus: [String: Int] = [:]
    for row in rows {
        let line = row["line"]?.intValue ?? 0
        let id = row["task_id"]?.stringValue ?? "?"
        let status = row["status"]?.stringValue ?? "?"
        byStatus[status, default: 0] += 1
        if !seen.insert(line).inserted { problems.append("summary.json: line \(line) has more than one row") }
        if tasksOfLine[line]?.last != id { problems.append("summary.json: line \(line) names \(id), its task is \(tasksOfLine[line] ?? [])") }
        if let record = tasks[id]?.record, record.status != status || row["reason"]?.stringValue != record.reason {
            problems.append("summary.json: line \(line) says \(status)(\(row["reason"]?.stringValue ?? "none")), \(id)'s task.json \(record.status)(\(record.reason))")
        }
    }
    if seen != Set(1...rowCount) { problems.append("summary.json: rows for \(seen.count) lines, not the \(rowCount) of the manifest") }
    let counts = summary["counts"]?.objectValue ?? [:]
    if summary["total"]?.intValue != rowCount { problems.append("summary.json: total \(summary["total"].map { JSONWriter.string($0) } ?? "none"), not \(rowCount)") }
    for status in ["completed", "error", "cancelled"] where counts[status]?.intValue != byStatus[status, default: 0] {
        problems.append("summary.json: counts.\(status) is \(counts[status].map { JSONWriter.string($0) } ?? "none"), its rows say \(byStatus[status, default: 0])")
    }
    let expectedExit: Int32 = byStatus["error", default: 0] > 0 ? 1 : 0
    if summary["exit_code"]?.intValue != Int(expectedExit) || exitStatus != expectedExit {
        problems.append("exit status \(exitStatus), summary.json's exit_code \(summary["exit_code"].map { JSONWriter.string($0) } ?? "none"); \(byStatus["error", default: 0]) rows ended in error")
    }
    return problems
}

/// One expectation for all problems, the first few spelt out, with the seed to replay them.
private func report(_ problems: [String], seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
    let promisesHeld = problems.isEmpty
    #expect(promisesHeld, "\(problems.count) problem(s) (seed \(seed)):\n\(problems.prefix(15).joined(separator: "\n"))", sourceLocation: sourceLocation)
}

// MARK: processes and randomness

/// How a child of the test ended.
struct ChildEnd: CustomStringConvertible {
    let killedBySIGKILL: Bool
    let exitStatus: Int32
    var description: String { killedBySIGKILL ? "SIGKILL" : "exit \(exitStatus)" }
}

/// Waits for a child of the test and says whether SIGKILL ended it.
func reap(_ pid: pid_t) -> ChildEnd {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return ChildEnd(killedBySIGKILL: status & 0x7F == SIGKILL, exitStatus: (status >> 8) & 0xFF)
}

/// SplitMix64: a small generator whose whole stream follows from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// DROVER_CRASH_SEED when set (to replay a failure's random draws), else a fresh seed; printed.
func crashSeed(_ test: String) -> UInt64 {
    let seed = getenv("DROVER_CRASH_SEED").flatMap { UInt64(String(cString: $0)) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
    print("\(test): seed \(seed) (replay its random draws with DROVER_CRASH_SEED=\(seed))")
    return seed
}

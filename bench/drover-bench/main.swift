// drover-bench: latency, hand-off and memory figures for BENCHMARKS.md, measured inside one
// supervisor with its trace hook. Run through bench/run.sh (release build).
import DroverCore
import Glibc

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted[sorted.count / 2]
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func format(_ ms: Double) -> String {
    let hundredths = Int((ms * 100).rounded())
    let frac = String(hundredths % 100)
    return "\(hundredths / 100).\(frac.count < 2 ? "0" : "")\(frac) ms"
}

func rssKiB() -> Int {
    guard let bytes = try? FileSystem.read("/proc/self/status") else { return 0 }
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

func makeSupervisor(folder: String, configure: (inout DroverConfig) -> Void) throws -> Supervisor {
    var config = DroverConfig()
    configure(&config)
    let loop = EventLoop()
    let store = try ResultStore(loop: loop, root: folder, durable: ProcessEnvironment.current()["BENCH_NO_SYNC"] == nil)
    let launch = WorkerLaunch(programDirectories: [FileSystem.executableDirectory()], environment: ProcessEnvironment.current())
    return Supervisor(loop: loop, config: config, store: store, launch: launch)
}

/// Runs tasks through one supervisor until all are reported ended.
func runAll(_ supervisor: Supervisor, prompts: [String]) throws {
    var open = 0
    supervisor.onReport = { snapshot in
        if snapshot.status.isTerminal {
            open -= 1
            if open == 0 { supervisor.loop.stop() }
        }
    }
    for prompt in prompts {
        try supervisor.submit(TaskRequest(agent: "explore", prompt: prompt))
        open += 1
    }
    supervisor.loop.run()
}

let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "/tmp/drover-bench"
ProcessSetup.prepare()

// 1. Completion latency: the worker's result frame read → task.json written and reported.
//    Quiet: 200 workers started together, finishing 10 ms apart, so nothing else competes
//    for the 2 cores. Loaded: 4 at a time, each completion handing its slot to a new worker
//    whose start-up runs alongside the write.
func completionLatency(label: String, folder: String, limit: Int, prompt: (Int) -> String) throws {
    let supervisor = try makeSupervisor(folder: folder) { $0.providerConcurrency = ["mock": limit] }
    var resultAt: [String: UInt64] = [:]
    var samples: [Double] = []
    var untilReaped: [Double] = []
    supervisor.onTrace = { id, event in
        switch event {
        case .resultFrame: resultAt[id] = Clock.monotonicNs()
        case .exited:
            if let start = resultAt[id] { untilReaped.append(Double(Clock.monotonicNs() - start) / 1e6) }
        case .spawned: break
        }
    }
    var open = 0
    supervisor.onReport = { snapshot in
        guard snapshot.status.isTerminal else { return }
        if let start = resultAt[snapshot.id] { samples.append(Double(Clock.monotonicNs() - start) / 1e6) }
        open -= 1
        if open == 0 { supervisor.loop.stop() }
    }
    for i in 0..<200 {
        try supervisor.submit(TaskRequest(agent: "explore", prompt: prompt(i)))
        open += 1
    }
    supervisor.loop.run()
    supervisor.store.close()
    print("completion latency, \(label): median \(format(median(samples))), p90 \(format(percentile(samples, 0.9)))"
        + " (worker exit and reaping: median \(format(median(untilReaped))))")
}

try completionLatency(label: "quiet (200 tasks finishing 10 ms apart)", folder: root + "/latency-quiet", limit: 0) { i in
    "@sleep \(2000 + 10 * i)ms\n@result answer \(i)"
}
try completionLatency(label: "loaded (200 tasks, 4 at a time, each end starting the next)", folder: root + "/latency-loaded", limit: 4) { i in
    "@result answer \(i)"
}

// 2. Slot hand-off under a limit of 1: one task's exit → the next task's spawn.
do {
    let supervisor = try makeSupervisor(folder: root + "/handoff") { $0.providerConcurrency = ["mock": 1] }
    var lastExit: UInt64?
    var samples: [Double] = []
    supervisor.onTrace = { _, event in
        switch event {
        case .exited: lastExit = Clock.monotonicNs()
        case .spawned:
            if let exit = lastExit { samples.append(Double(Clock.monotonicNs() - exit) / 1e6) }
        case .resultFrame: break
        }
    }
    try runAll(supervisor, prompts: (0..<200).map { "@result \($0)" })
    supervisor.store.close()
    print("slot hand-off (exit -> next spawn, limit 1, 200 tasks): median \(format(median(samples))), p90 \(format(percentile(samples, 0.9)))")
}

// 3. Memory with 500 running mock tasks.
do {
    let supervisor = try makeSupervisor(folder: root + "/memory") { $0.providerConcurrency = ["mock": 0] }
    let before = rssKiB()
    var running = 0
    var peak = 0
    var open = 0
    supervisor.onReport = { snapshot in
        if snapshot.status == .running {
            running += 1
            if running == 500 {
                peak = rssKiB()
                supervisor.cancelAll()
            }
        }
        if snapshot.status.isTerminal {
            open -= 1
            if open == 0 { supervisor.loop.stop() }
        }
    }
    for _ in 0..<500 {
        try supervisor.submit(TaskRequest(agent: "explore", prompt: "@busy 60s"))
        open += 1
    }
    supervisor.loop.run()
    supervisor.store.close()
    print("supervisor memory with 500 running mock tasks: \(peak / 1024) MiB RSS (\(before / 1024) MiB before the first spawn, \((peak - before) / 500) KiB per task)")
}

// 4. Cancel latency: cancel requested → the worker's whole group reaped and the task ended
//    (a cooperative worker, which leaves on the cancel frame).
do {
    let supervisor = try makeSupervisor(folder: root + "/cancel") { $0.providerConcurrency = ["mock": 0] }
    var requested: [String: UInt64] = [:]
    var samples: [Double] = []
    var ids: [String] = []
    var open = 0
    supervisor.onEnded = { snapshot in
        if let start = requested[snapshot.id] { samples.append(Double(Clock.monotonicNs() - start) / 1e6) }
    }
    supervisor.onReport = { snapshot in
        if snapshot.status.isTerminal {
            open -= 1
            if open == 0 { supervisor.loop.stop() }
        }
    }
    for _ in 0..<50 {
        ids.append(try supervisor.submit(TaskRequest(agent: "explore", prompt: "@message ready\n@hang")).id)
        open += 1
    }
    // Once every worker has said it is ready, cancel them one by one, 20 ms apart.
    let timer = LoopTimer(loop: supervisor.loop)
    var next = 0
    timer.start(after: 1500, repeat: 20) {
        guard next < ids.count else { return timer.stop() }
        requested[ids[next]] = Clock.monotonicNs()
        supervisor.cancel(ids[next])
        next += 1
    }
    supervisor.loop.run()
    supervisor.store.close()
    print("cancel latency (request -> group reaped, cooperative worker, 50 tasks): median \(format(median(samples))), p90 \(format(percentile(samples, 0.9)))")
}

// 5. Frame throughput end to end: a worker floods messages; every one is decoded, counted,
//    and recorded in the transcript and the session file.
func floodRate(count: Int, bytes: Int, folder: String, buffered: Int? = nil) throws -> (seconds: Double, frames: Int) {
    let supervisor = try makeSupervisor(folder: folder) { config in if let buffered { config.maxBufferedBytes = buffered } }
    var spawnedAt: UInt64 = 0
    var endedAt: UInt64 = 0
    supervisor.onTrace = { _, event in if case .spawned = event { spawnedAt = Clock.monotonicNs() } }
    supervisor.onEnded = { _ in endedAt = Clock.monotonicNs() }
    var frames = 0
    supervisor.onReport = { snapshot in
        if snapshot.status.isTerminal {
            frames = snapshot.progress.messages
            supervisor.loop.stop()
        }
    }
    var request = TaskRequest(agent: "explore", prompt: "@flood \(count) \(bytes)")
    request.breaker.maxTranscriptBytes = 0
    try supervisor.submit(request)
    supervisor.loop.run()
    supervisor.store.close()
    return (Double(endedAt - spawnedAt) / 1e9, frames)
}

do {
    let small = try floodRate(count: 200_000, bytes: 100, folder: root + "/flood-small")
    print("frame throughput, 100-byte messages: \(Int(Double(small.frames) / small.seconds)) frames/s (\(small.frames) frames in \(format(small.seconds * 1000)))")
    let large = try floodRate(count: 300, bytes: 1 << 20, folder: root + "/flood-large")
    let megabytes = Double(large.frames) * Double(1 << 20) / 1e6
    print("frame throughput, 1 MiB messages: \(Int(megabytes / large.seconds)) MB/s (\(large.frames) frames in \(format(large.seconds * 1000)))")
    // The same with a bound too large to matter: the worker is then read as fast as drover
    // can, and its frames wait in memory for the disk (what drover did before the bound).
    let unbounded = try floodRate(count: 300, bytes: 1 << 20, folder: root + "/flood-unbounded", buffered: 1 << 30)
    print("  the same with maxBufferedBytes 1 GiB (read ahead of the disk): \(Int(megabytes / unbounded.seconds)) MB/s")
}

import DroverCore
import DroverWire
import Glibc

/// One drover task run through an agent CLI: reads drover's frames on stdin, runs the CLI
/// as its own child (own process group, argv only, no shell), turns the CLI's JSON lines into
/// frames on stdout, and ends with exactly one `result` or `error` (none when cancelled).
/// Follow-up `prompt` frames are queued and each runs as a resumed turn of the same CLI
/// conversation once the current turn has succeeded; the result is the last turn's answer.
/// What the CLI reports of its token usage and cost goes out as `usage` frames holding the
/// task's totals over its turns; rate limits it reports go out as `rate_limit` frames.
/// Everything happens on one libuv loop; every wait is a timer.
public final class AdapterRun {
    private enum Phase { case awaitingStart, running, stopping, done }

    private struct Start {
        var prompt: String
        var model: String?
        var workdir: String?
        var resume: Bool
        var transcriptPath: String?
    }

    private let loop: EventLoop
    private let options: AdapterOptions
    private let environment: [String: String]
    /// What the CLI runs with: `environment` plus the adapter's settings for it.
    private let cliEnvironment: [String: String]
    private let link: DroverLink
    private var output: FrameOutput { link.output }
    private var phase = Phase.awaitingStart
    private var start: Start?
    private var program: String?
    private var followUps: [String] = []

    // The current turn.
    private var child: ChildProcess?
    private var translator: any StreamTranslator
    private var lines = LineSplitter()
    private var stderrTail: [UInt8] = []
    private var exitStatus: (status: Int64, signal: Int32)?

    // Across turns.
    private var cliSessionID: String?
    private var combinedData = JSONObject()
    private var turns = 0
    /// Usage of the turns that have ended, and the totals last sent in a `usage` frame.
    private var endedTurnsUsage: UsageTotals?
    private var sentUsage: UsageTotals?
    /// The conversation's cost so far by the CLI's own running count, where it keeps one:
    /// 0 for a new conversation, nil when unknown.
    private var costSoFar: Double? = 0
    private var finalSent: Bool { link.ended }
    /// Cancelled, signalled or left by drover while a turn ran: the task did not complete.
    private var stoppedMidTurn = false

    private let killTimer: LoopTimer
    private let lingerTimer: LoopTimer
    private let drainTimer: LoopTimer

    /// Called once, with the exit code the adapter should leave with.
    public var onFinished: (Int32) -> Void = { _ in }

    static let stderrTailBytes = 2000
    /// After the CLI exits, how long a descendant that left its group may hold its pipes.
    static let drainMs = 2000

    public init(loop: EventLoop, options: AdapterOptions, environment: [String: String]) {
        self.loop = loop
        self.options = options
        self.environment = environment
        cliEnvironment = options.kind.environment(environment, cliRetries: options.cliRetries)
        link = DroverLink(loop: loop)
        translator = options.kind.makeTranslator()
        killTimer = LoopTimer(loop: loop)
        lingerTimer = LoopTimer(loop: loop)
        drainTimer = LoopTimer(loop: loop)
    }

    private var cli: String { options.kind.rawValue }

    public func begin() {
        link.onFrame = { [weak self] frame in self?.handle(frame) }
        link.onStop = { [weak self] in self?.stop() }
        link.onBroken = { [weak self] problem in self?.fail(problem) }
        link.wantsHeartbeat = { [weak self] in self?.phase == .running }
        link.begin(worker: "drover-adapter \(cli)", heartbeatMs: options.heartbeatMs)
    }

    // MARK: frames from drover

    private func handle(_ frame: Frame) {
        switch frame.type {
        case "start":
            guard phase == .awaitingStart else { return }
            let start = Start(
                prompt: frame["prompt"]?.stringValue ?? "",
                model: frame["model"]?.stringValue,
                workdir: frame["workdir"]?.stringValue,
                resume: frame["resume"]?.boolValue == true,
                transcriptPath: frame["transcript_path"]?.stringValue)
            self.start = start
            var resumeID: String?
            if start.resume, let path = start.transcriptPath {
                let transcript = try? FileSystem.read(path)
                resumeID = transcript.flatMap { ResumeLookup.cliSessionID(transcript: $0, cli: cli) }
                if resumeID == nil {
                    output.send(Frames.log("no earlier \(cli) session found in \(path): starting a new \(cli) conversation"))
                } else {
                    costSoFar = transcript.flatMap { ResumeLookup.cliTotalCost(transcript: $0, cli: cli) }
                }
            }
            runTurn(prompt: start.prompt, resume: resumeID)
        case "prompt":
            guard phase == .running, let text = frame["text"]?.stringValue else { return }
            followUps.append(text)
            output.send(Frames.log("follow-up prompt queued (\(followUps.count) waiting): it runs as a resumed \(cli) turn when the current one ends", level: "info"))
        case "cancel":
            stop()
        default:
            break
        }
    }

    // MARK: one turn of the CLI

    private func runTurn(prompt: String, resume: String?) {
        guard let start else { return }
        if program == nil {
            program = WorkerLaunch(programDirectories: [], environment: environment).locate(options.program)
        }
        guard let program else {
            fail("\(cli) not found: no executable \"\(options.program)\" on PATH (\(environment["PATH"] ?? "unset")). Install it, or name it with `drover-adapter \(cli) --program /path/to/\(cli)` in the agent's command.")
            return
        }
        if let workdir = start.workdir, !workdir.isEmpty, !FileSystem.isDirectory(workdir) {
            fail("cannot run \(cli) in \(workdir): no such folder")
            return
        }
        translator = options.kind.makeTranslator(costBefore: costSoFar)
        lines = LineSplitter()
        stderrTail = []
        exitStatus = nil
        let invocation = options.kind.invocation(prompt: prompt, model: start.model, resumeSessionID: resume, extra: options.extraArguments)
        let spec = SpawnSpec(
            executable: program, arguments: [program] + invocation.arguments,
            environment: cliEnvironment.map { "\($0.key)=\($0.value)" }.sorted(),
            workingDirectory: start.workdir.flatMap { $0.isEmpty ? nil : $0 })
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(loop: loop, spec: spec)
        } catch {
            fail("\(error)")
            return
        }
        self.child = child
        phase = .running
        child.onStdout = { [weak self] bytes in self?.cliOutput(bytes) }
        child.onStderr = { [weak self] bytes in self?.cliStderr(bytes) }
        child.onExit = { [weak self] status, signal in self?.cliExited(status: status, signal: signal) }
        child.onClosed = { [weak self] in self?.turnEnded() }
        if let text = invocation.stdinText { child.write(Array(text.utf8)) }
        child.closeStdinAfterWrites()
    }

    private func cliOutput(_ bytes: UnsafeRawBufferPointer) {
        guard !finalSent else { return }
        do {
            for line in try lines.append(bytes) {
                handle(line: line, last: false)
                if finalSent { return }
            }
        } catch {
            badStream("\(cli) wrote a line longer than \(error.limit) bytes without a newline")
        }
    }

    private func handle(line: [UInt8], last: Bool) {
        guard !isBlank(line) else { return }
        let which = last ? "its last line (cut off: no newline at the end)" : "a line"
        let value: JSONValue
        do {
            value = try JSONParser.parse(line).value
        } catch {
            badStream("\(cli) wrote \(which) that is not valid JSON (\(error.reason) at byte \(error.offset)): \(quoted(line))")
            return
        }
        guard let object = value.objectValue else {
            badStream("\(cli) wrote \(which) that is a JSON \(value.typeName), not an object: \(quoted(line))")
            return
        }
        for frame in translator.translate(object, nowMs: Clock.wallMs()) {
            if frame["type"]?.stringValue == "session" && frame["cli_session_id"]?.stringValue == cliSessionID { continue }
            output.send(frame)
        }
        if let id = translator.cliSessionID { cliSessionID = id }
        sendUsageIfChanged()
        if translator.awaitsMoreAnswers {
            // The CLI's own background work will bring another answer: it leaves by itself
            // then (the task's ttl still bounds the wait).
            lingerTimer.stop()
        } else if translator.verdict != nil && !lingerTimer.isActive && phase == .running {
            // The answer is in; a CLI that does not leave on its own is stopped.
            lingerTimer.start(after: options.lingerMs) { [weak self] in self?.terminateChild() }
        }
    }

    private func cliStderr(_ bytes: UnsafeRawBufferPointer) {
        // drover keeps the adapter's stderr in the task's stderr.log.
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { break }
            offset += written
        }
        stderrTail.append(contentsOf: bytes)
        if stderrTail.count > 2 * Self.stderrTailBytes { stderrTail.removeFirst(stderrTail.count - Self.stderrTailBytes) }
    }

    private func cliExited(status: Int64, signal: Int32) {
        exitStatus = (status, signal)
        lingerTimer.stop()
        drainTimer.start(after: Self.drainMs) { [weak self] in self?.child?.abandonOutputs() }
    }

    /// The task's usage so far: the ended turns' and the current one's.
    private var usageTotals: UsageTotals? {
        guard let current = translator.runUsage else { return endedTurnsUsage }
        return endedTurnsUsage.map { $0 + current } ?? current
    }

    private func sendUsageIfChanged() {
        guard let totals = usageTotals, totals != sentUsage, !finalSent else { return }
        sentUsage = totals
        output.send(totals.frame)
    }

    /// The CLI is reaped and its pipes are closed: decide what the turn means.
    private func turnEnded() {
        killTimer.stop()
        drainTimer.stop()
        lingerTimer.stop()
        child = nil
        let status = exitStatus?.status ?? -1
        let signal = exitStatus?.signal ?? 0
        if phase == .stopping || finalSent {
            finish()
            return
        }
        if let rest = lines.finish() {
            handle(line: rest, last: true)
            if finalSent {
                finish()
                return
            }
        }
        sendUsageIfChanged()
        endedTurnsUsage = usageTotals
        costSoFar = translator.conversationCostUsd
        let cleanExit = status == 0 && signal == 0
        switch translator.verdict ?? (cleanExit ? translator.verdictAtCleanExit() : nil) {
        case .succeeded(let text, let data)?:
            turns += 1
            combine(data)
            if !followUps.isEmpty {
                if let id = cliSessionID {
                    let next = followUps.removeFirst()
                    output.send(Frames.message(next, role: "user"))
                    runTurn(prompt: next, resume: id)
                    return
                }
                output.send(Frames.log("\(followUps.count) follow-up prompt(s) not run: \(cli) named no session to resume"))
            }
            var data = combinedData
            data["turns"] = JSONValue(turns)
            // The cost of this task's turns, as the usage frames say (nil: not known for all).
            if let usage = endedTurnsUsage { data["cost_usd"] = usage.costUsd.map { .number($0) } }
            link.sendResult(text: text, data: data)
            finish()
        case .failed(let message, let retryable)?:
            link.sendError(message, retryable: retryable)
            finish()
        case nil:
            let tail = String(decoding: stderrTail.suffix(Self.stderrTailBytes), as: UTF8.self)
                .trimmed()
            let how: String
            if signal != 0 {
                how = "was killed by signal \(signal) (\(signalName(signal)))"
            } else {
                how = "exited with status \(status)"
            }
            var message = "\(cli) \(how) without a final answer"
            message += tail.isEmpty ? " (its stderr was empty)" : "; its stderr ends: \(tail)"
            link.sendError(message, retryable: RetryClassifier.isRetryable(text: tail))
            finish()
        }
    }

    /// Usage and cost add up over the turns of one task; other members take the latest.
    private func combine(_ data: JSONObject) {
        for (key, value) in data.members {
            switch key {
            case "usage", "cost_usd", "num_turns", "duration_ms", "duration_api_ms":
                combinedData[key] = addingUsage(combinedData[key], value)
            default:
                combinedData[key] = value
            }
        }
    }

    // MARK: ending

    /// The CLI's stream cannot be trusted any more: report it and stop the CLI.
    private func badStream(_ message: String) {
        guard !finalSent else { return }
        link.sendError(message, retryable: false)
        terminateChild()
    }

    /// An error before or without a CLI: report it and leave.
    private func fail(_ message: String) {
        link.sendError(message, retryable: false)
        if child == nil {
            finish()
        } else {
            terminateChild()
        }
    }

    /// Cancel, end of stdin or a signal: stop the CLI (if any) and leave once it is reaped.
    private func stop() {
        switch phase {
        case .awaitingStart:
            finish()
        case .running:
            phase = .stopping
            stoppedMidTurn = true
            terminateChild()
        case .stopping, .done:
            break
        }
    }

    /// SIGTERM to the CLI's process group, SIGKILL after the grace.
    private func terminateChild() {
        guard let child, !child.exited else { return }
        child.signalGroup(SIGTERM)
        killTimer.start(after: options.graceMs) { [weak self] in self?.child?.signalGroup(SIGKILL) }
    }

    private func finish() {
        guard phase != .done else { return }
        phase = .done
        link.close()
        onFinished(link.exitCode(stoppedMidTurn: stoppedMidTurn))
    }
}

func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS",
        SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM",
    ]
    return names[signal] ?? "signal \(signal)"
}

extension String {
    /// Without leading and trailing whitespace.
    func trimmed() -> String {
        let drop: Set<Character> = [" ", "\n", "\t", "\r"]
        var scalars = Substring(self)
        while let first = scalars.first, drop.contains(first) { scalars = scalars.dropFirst() }
        while let last = scalars.last, drop.contains(last) { scalars = scalars.dropLast() }
        return String(scalars)
    }
}

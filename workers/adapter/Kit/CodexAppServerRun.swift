import DroverCore
import DroverWire
import Glibc

/// One drover task run through Codex's app-server (`drover-adapter codex-app-server`).
/// Unlike the one-shot CLIs that AdapterRun drives, the server is a conversation: the adapter
/// starts it once, shakes hands (`initialize`), opens a thread (`thread/start`, or
/// `thread/resume` with the thread an earlier task of the session named), and runs each
/// prompt as a turn (`turn/start`): the start frame's, then every follow-up `prompt` frame, in
/// order, as new turns of the same thread. The server's notifications become frames
/// (CodexAppServerTranslator) and its requests are answered at once. The task ends with the
/// last turn's `result`, or an `error`; on cancel, end of stdin or a signal the turn under way
/// is interrupted (`turn/interrupt`, which also ends the commands Codex runs for it) and no
/// result is sent. Then the server's stdin is closed, on which it leaves; one that does not is
/// stopped with SIGTERM and SIGKILL to its process group. Everything happens on one libuv loop;
/// every wait is a timer.
public final class CodexAppServerRun {
    private enum Phase { case awaitingStart, running, stopping, done }

    /// What each of the adapter's requests in flight was, by id.
    private enum Call: String {
        case initialize, openThread = "thread/start or thread/resume", startTurn = "turn/start", interrupt = "turn/interrupt"
    }

    private struct Start {
        var prompt: String
        var model: String?
        var workdir: String?
        var resumeThread: String?
    }

    private let loop: EventLoop
    private let options: AdapterOptions
    private let environment: [String: String]
    private let link: DroverLink
    private var output: FrameOutput { link.output }
    private var phase = Phase.awaitingStart
    private var start: Start?

    // The server.
    private var child: ChildProcess?
    private var lines = LineSplitter()
    private var stderrTail: [UInt8] = []
    private var exitStatus: (status: Int64, signal: Int32)?
    private var translator: CodexAppServerTranslator
    private var nextID = 1
    private var calls: [Int: Call] = [:]

    // The conversation.
    private var threadID: String?
    /// Set from `turn/start`'s answer; `turnUnderWay` from the request until `turn/completed`.
    private var turnID: String?
    private var turnUnderWay = false
    private var followUps: [String] = []
    private var turns = 0
    private var sentUsage: UsageTotals?
    private var finalSent: Bool { link.ended }
    /// Cancelled, signalled or left by drover before the task's end was sent.
    private var stoppedMidTurn = false

    /// Bounds the wait for an interrupted turn to end, and for the server to leave.
    private let shutdownTimer: LoopTimer
    private let killTimer: LoopTimer
    private let drainTimer: LoopTimer

    /// Called once, with the exit code the adapter should leave with.
    public var onFinished: (Int32) -> Void = { _ in }

    public init(loop: EventLoop, options: AdapterOptions, environment: [String: String]) {
        self.loop = loop
        self.options = options
        self.environment = environment
        link = DroverLink(loop: loop)
        translator = CodexAppServerTranslator(approval: options.approval)
        shutdownTimer = LoopTimer(loop: loop)
        killTimer = LoopTimer(loop: loop)
        drainTimer = LoopTimer(loop: loop)
    }

    private var cli: String { options.kind.rawValue }

    public func begin() {
        // Codex runs each command in a session of its own, out of the server's process group:
        // should the server die without ending them, they are re-parented here and killed.
        OrphanSweeper.enable()
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
            var start = Start(
                prompt: frame["prompt"]?.stringValue ?? "",
                model: frame["model"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 },
                workdir: frame["workdir"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 })
            if frame["resume"]?.boolValue == true, let path = frame["transcript_path"]?.stringValue {
                let transcript = try? FileSystem.read(path)
                start.resumeThread = transcript.flatMap { ResumeLookup.cliSessionID(transcript: $0, cli: cli) }
                if start.resumeThread == nil {
                    output.send(Frames.log("no earlier \(cli) thread found in \(path): starting a new thread"))
                }
            }
            self.start = start
            launch(start)
        case "prompt":
            guard phase == .running, !finalSent, let text = frame["text"]?.stringValue else { return }
            followUps.append(text)
            output.send(Frames.log("follow-up prompt queued (\(followUps.count) waiting): it runs as the next turn of the \(cli) thread", level: "info"))
        case "cancel":
            stop()
        default:
            break
        }
    }

    // MARK: the server

    private func launch(_ start: Start) {
        guard let program = WorkerLaunch(programDirectories: [], environment: environment).locate(options.program) else {
            fail("\(cli) not found: no executable \"\(options.program)\" on PATH (\(environment["PATH"] ?? "unset")). Install it, or name it with `drover-adapter \(cli) --program /path/to/\(cli)` in the agent's command.")
            return
        }
        if let workdir = start.workdir, !FileSystem.isDirectory(workdir) {
            fail("cannot run \(cli) in \(workdir): no such folder")
            return
        }
        let invocation = options.kind.invocation(prompt: start.prompt, model: start.model, resumeSessionID: nil, extra: options.extraArguments)
        let spec = SpawnSpec(
            executable: program, arguments: [program] + invocation.arguments,
            environment: options.kind.environment(environment, cliRetries: options.cliRetries).map { "\($0.key)=\($0.value)" }.sorted(),
            workingDirectory: start.workdir)
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(loop: loop, spec: spec)
        } catch {
            fail("\(error)")
            return
        }
        self.child = child
        phase = .running
        child.onStdout = { [weak self] bytes in self?.serverOutput(bytes) }
        child.onStderr = { [weak self] bytes in self?.serverStderr(bytes) }
        child.onExit = { [weak self] status, signal in self?.serverExited(status: status, signal: signal) }
        child.onClosed = { [weak self] in self?.serverEnded() }
        call(.initialize) { CodexAppServerRequests.initialize(id: $0) }
    }

    private func call(_ kind: Call, _ message: (Int) -> JSONObject) {
        let id = nextID
        nextID += 1
        calls[id] = kind
        send(message(id))
    }

    private func send(_ message: JSONObject) {
        child?.write(CodexAppServerRequests.line(message))
    }

    private func serverOutput(_ bytes: UnsafeRawBufferPointer) {
        do {
            for line in try lines.append(bytes) where !isBlank(line) {
                handle(line: line)
            }
        } catch {
            badStream("\(cli) wrote a line longer than \(error.limit) bytes without a newline")
        }
    }

    private func handle(line: [UInt8]) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line).value
        } catch {
            badStream("\(cli) wrote a line that is not valid JSON (\(error.reason) at byte \(error.offset)): \(quoted(line))")
            return
        }
        guard let message = value.objectValue else {
            badStream("\(cli) wrote a line that is a JSON \(value.typeName), not an object: \(quoted(line))")
            return
        }
        if message["method"] == nil, let id = message["id"]?.integer {
            answered(id: id, message)
            return
        }
        for frame in translator.translate(message, nowMs: Clock.wallMs()) where !finalSent {
            output.send(frame)
        }
        for reply in translator.takeReplies() { send(reply) }
        sendUsageIfChanged()
        if turnUnderWay, message["method"]?.stringValue == "turn/completed", let verdict = translator.verdict {
            turnUnderWay = false
            turnID = nil
            turnEnded(verdict)
        }
    }

    /// The server's answer to one of the adapter's requests.
    private func answered(id: Int, _ message: JSONObject) {
        guard let kind = calls.removeValue(forKey: id) else { return }
        if let error = message["error"]?.objectValue {
            let text = error["message"]?.stringValue ?? JSONWriter.string(.object(error))
            switch kind {
            case .interrupt:
                // The turn had ended already: its turn/completed is on its way, or came.
                output.send(Frames.log("\(cli) refused turn/interrupt: \(shortened(text, to: 500))", level: "info"))
                if !turnUnderWay { shutDown() }
            case .openThread where start?.resumeThread != nil:
                fail("\(cli) could not resume thread \(start?.resumeThread ?? ""): \(shortened(text, to: 1000))")
            default:
                fail("\(cli) refused \(kind.rawValue): \(shortened(text, to: 1000))")
            }
            return
        }
        let result = message["result"]?.objectValue ?? JSONObject()
        switch kind {
        case .initialize:
            send(CodexAppServerRequests.initialized)
            guard phase == .running, let start else { return }
            call(.openThread) {
                CodexAppServerRequests.openThread(id: $0, resume: start.resumeThread, cwd: start.workdir, model: start.model, sandbox: options.sandbox,
                                                  approvalPolicy: options.approvalPolicy)
            }
        case .openThread:
            guard let id = result["thread"]?.objectValue?["id"]?.stringValue, !id.isEmpty else {
                fail("\(cli) opened a thread without naming it: \(shortened(JSONWriter.string(.object(result)), to: 500))")
                return
            }
            threadID = id
            for frame in translator.sawThread(id) { output.send(frame) }
            guard phase == .running, let start else { return }
            startTurn(start.prompt)
        case .startTurn:
            turnID = result["turn"]?.objectValue?["id"]?.stringValue
            if phase == .stopping { interruptTurn() }
        case .interrupt:
            break
        }
    }

    private func startTurn(_ prompt: String) {
        guard let threadID else { return }
        translator.beginTurn()
        turnUnderWay = true
        turnID = nil
        call(.startTurn) { CodexAppServerRequests.startTurn(id: $0, thread: threadID, prompt: prompt) }
    }

    private func turnEnded(_ verdict: TurnVerdict) {
        if phase == .stopping {
            shutDown()
            return
        }
        switch verdict {
        case .succeeded(let text, var data):
            turns += 1
            if !followUps.isEmpty {
                let next = followUps.removeFirst()
                output.send(Frames.message(next, role: "user"))
                startTurn(next)
                return
            }
            data["turns"] = JSONValue(turns)
            link.sendResult(text: text, data: data)
        case .failed(let message, let retryable):
            link.sendError(message, retryable: retryable)
        }
        shutDown()
    }

    private func serverStderr(_ bytes: UnsafeRawBufferPointer) {
        // drover keeps the adapter's stderr in the task's stderr.log.
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { break }
            offset += written
        }
        stderrTail.append(contentsOf: bytes)
        if stderrTail.count > 2 * AdapterRun.stderrTailBytes { stderrTail.removeFirst(stderrTail.count - AdapterRun.stderrTailBytes) }
    }

    private func serverExited(status: Int64, signal: Int32) {
        exitStatus = (status, signal)
        drainTimer.start(after: AdapterRun.drainMs) { [weak self] in self?.child?.abandonOutputs() }
    }

    /// The server is reaped and its pipes are closed.
    private func serverEnded() {
        shutdownTimer.stop()
        killTimer.stop()
        drainTimer.stop()
        child = nil
        if let rest = lines.finish(), !isBlank(rest), !finalSent, phase == .running {
            handle(line: rest)
        }
        if phase == .running && !finalSent {
            let status = exitStatus?.status ?? -1
            let signal = exitStatus?.signal ?? 0
            let how = signal != 0 ? "was killed by signal \(signal) (\(signalName(signal)))" : "exited with status \(status)"
            let tail = String(decoding: stderrTail.suffix(AdapterRun.stderrTailBytes), as: UTF8.self).trimmed()
            var message = "\(cli) \(how) before its turn ended"
            message += tail.isEmpty ? " (its stderr was empty)" : "; its stderr ends: \(tail)"
            link.sendError(message, retryable: RetryClassifier.isRetryable(text: tail))
        }
        finish()
    }

    private func sendUsageIfChanged() {
        guard let totals = translator.runUsage, totals != sentUsage, !finalSent else { return }
        sentUsage = totals
        output.send(totals.frame)
    }

    // MARK: ending

    /// Cancel, end of stdin or a signal: interrupt the turn under way, then let the server go.
    private func stop() {
        switch phase {
        case .awaitingStart:
            finish()
        case .running:
            phase = .stopping
            stoppedMidTurn = !finalSent
            guard turnUnderWay else {
                shutDown()
                return
            }
            interruptTurn()
            // The interrupted turn's end is awaited, bounded.
            shutdownTimer.start(after: options.graceMs) { [weak self] in self?.terminateServer() }
        case .stopping, .done:
            break
        }
    }

    /// `turn/interrupt` for the turn under way, once its id is known (else when it is).
    private func interruptTurn() {
        guard let threadID, let turnID else { return }
        call(.interrupt) { CodexAppServerRequests.interrupt(id: $0, thread: threadID, turn: turnID) }
    }

    /// The task is decided: close the server's stdin (it leaves at EOF), and stop it if it
    /// has not left within the grace.
    private func shutDown() {
        guard let child else {
            finish()
            return
        }
        child.closeStdin()
        shutdownTimer.start(after: options.graceMs) { [weak self] in self?.terminateServer() }
    }

    /// SIGTERM to the server's process group, SIGKILL after the grace.
    private func terminateServer() {
        guard let child, !child.exited else { return }
        child.signalGroup(SIGTERM)
        killTimer.start(after: options.graceMs) { [weak self] in self?.child?.signalGroup(SIGKILL) }
    }

    /// The server's output cannot be trusted any more: report it and stop the server.
    private func badStream(_ message: String) {
        guard !finalSent else { return }
        link.sendError(message, retryable: false)
        terminateServer()
    }

    /// An error before or without a server, or a refusal: report it and leave.
    private func fail(_ message: String) {
        link.sendError(message, retryable: false)
        if child == nil {
            finish()
        } else {
            shutDown()
        }
    }

    private func finish() {
        guard phase != .done else { return }
        phase = .done
        shutdownTimer.stop()
        link.close()
        onFinished(link.exitCode(stoppedMidTurn: stoppedMidTurn))
    }
}

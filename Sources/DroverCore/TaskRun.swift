import CLibUV
import DroverWire
import Glibc

/// One running task: its child, the frames it sends, its timers, and the way it ends.
/// The outcome is decided once (the first of result, idle, error, timer, cancel or exit);
/// the task is ended only when the child has exited and all its pipes are closed.
final class TaskRun {
    /// How long a worker whose task is decided may take to exit on its own.
    static let exitGraceMs = 1000
    /// How long to wait for EOF after the exit (a descendant that left the group may hold
    /// the pipes open).
    static let drainGraceMs = 1000
    /// Raw commands: the result is the end of stdout, at most this much.
    static let rawResultBytes = 64 * 1024

    private unowned let supervisor: Supervisor
    private let task: SupervisedTask
    private let child: ChildProcess
    private let timers: ResolvedTimers
    private let raw: Bool
    private let promptInArguments: Bool
    private let startedAt: UInt64
    private var decoder: FrameDecoder

    private(set) var outcome: Outcome?
    private var protocolBroken = false
    private var exitStatus: Int64?
    private var exitSignal: Int32 = 0

    private var lastAssistantText: String?
    private var openTodos = 0
    private var frameCount = 0
    private var lastFrameAt: UInt64
    private var framesAtLastPoll = 0
    private var quietPolls = 0
    private var rawLine: [UInt8] = []
    private var rawTail: [UInt8] = []
    private let breaker: (maxToolCalls: Int, maxRepeatedToolCalls: Int, maxTranscriptBytes: Int)
    private var lastToolCall = ""
    private var repeatedToolCalls = 0
    private var transcriptBytes = 0

    private let ttlTimer: LoopTimer
    private let staleTimer: LoopTimer
    private let pollTimer: LoopTimer
    private let idleTimer: LoopTimer
    private let endTimer: LoopTimer
    private let outputClosedTimer: LoopTimer

    init(supervisor: Supervisor, task: SupervisedTask, child: ChildProcess, promptInArguments: Bool) {
        self.supervisor = supervisor
        self.task = task
        self.child = child
        self.promptInArguments = promptInArguments
        timers = task.timers
        breaker = task.breaker.resolved
        raw = task.agent.workerProtocol == .raw
        decoder = FrameDecoder(maxFrameBytes: supervisor.config.maxFrameBytes)
        let loop = supervisor.loop
        // Timers count from now, not from before the spawn: a ttl never ends a task before
        // started_at + ttl.
        loop.refreshTime()
        startedAt = loop.nowMs
        lastFrameAt = startedAt
        ttlTimer = LoopTimer(loop: loop)
        staleTimer = LoopTimer(loop: loop)
        pollTimer = LoopTimer(loop: loop)
        idleTimer = LoopTimer(loop: loop)
        endTimer = LoopTimer(loop: loop)
        outputClosedTimer = LoopTimer(loop: loop)
    }

    private var id: String { task.snapshot.id }
    private var store: ResultStore { supervisor.store }

    func begin() {
        child.onStdout = { [weak self] bytes in self?.received(bytes) }
        child.onStderr = { [weak self] bytes in
            guard let self else { return }
            self.store.append(self.store.stderrFile(self.id), Array(bytes))
        }
        child.onStdoutEnd = { [weak self] in self?.stdoutEnded() }
        child.onExit = { [weak self] status, signal in self?.exited(status: status, signal: signal) }
        child.onClosed = { [weak self] in self?.closed() }

        let snapshot = task.snapshot
        if raw {
            if !promptInArguments { child.write(Array(snapshot.prompt.utf8)) }
            child.closeStdinAfterWrites()
        } else {
            var start: JSONObject = [
                "type": "start", "protocol": 1, "task_id": .string(id), "session_id": .string(snapshot.sessionID),
                "agent": .string(snapshot.agent), "provider": JSONValue(snapshot.provider), "model": JSONValue(snapshot.model),
                "description": .string(snapshot.description), "prompt": .string(snapshot.prompt), "resume": .bool(task.resume),
            ]
            if task.resume { start["transcript_path"] = .string(store.sessionFile(snapshot.sessionID)) }
            start["workdir"] = .string(task.cwd)
            start["deadline_ms"] = timers.taskTtl > 0 ? .number(Double((snapshot.startedMs ?? 0) + Int64(timers.taskTtl))) : .null
            send(start)
        }
        if timers.taskTtl > 0 {
            ttlTimer.start(after: timers.taskTtl) { [weak self] in
                guard let self else { return }
                self.decide(Outcome(.ttl, message: "ran longer than its ttl of \(DurationText.format(milliseconds: self.timers.taskTtl))"))
            }
        }
        // Raw programs send no frames, so silence says nothing about them.
        guard !raw else { return }
        if timers.staleTimeout > 0 { armStaleTimer(after: timers.staleTimeout) }
        if timers.stablePolls > 0 && timers.pollInterval > 0 {
            pollTimer.start(after: timers.minStabilityTime, repeat: timers.pollInterval) { [weak self] in self?.poll() }
        }
    }

    // MARK: frames

    private func send(_ frame: JSONObject) {
        child.write(FrameEncoder.encode(frame))
        var line: [UInt8] = []
        JSONWriter.writeObject(frame, into: &line)
        record(direction: "out", objectBytes: line)
    }

    /// Adds a frame to the task's transcript and its session's, as
    /// `{"t": ms, "dir": ..., ...frame}` on one line.
    private func record(direction: String, objectBytes: [UInt8]) {
        // Past the breaker's cap nothing more is written: the task is being ended.
        guard breaker.maxTranscriptBytes == 0 || transcriptBytes <= breaker.maxTranscriptBytes else { return }
        var line = Array("{\"t\":\(Clock.wallMs()),\"dir\":\"\(direction)\"".utf8)
        line.reserveCapacity(line.count + objectBytes.count + 2)
        // Skip the frame's own "{"; a non-empty object continues with "," before its members.
        guard let brace = objectBytes.firstIndex(of: UInt8(ascii: "{")) else { return }
        let rest = objectBytes[(brace + 1)...].drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        if rest.first != UInt8(ascii: "}") { line.append(UInt8(ascii: ",")) }
        // Newlines can only be whitespace in valid JSON (inside strings they are escaped).
        // Copied in bulk and found with memchr: a byte-by-byte loop made a flood of large
        // frames ten times slower in debug builds.
        let copied = line.count
        line.append(contentsOf: rest)
        line.withUnsafeMutableBufferPointer { buffer in
            let tail = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[copied...])
            for lineBreak: UInt8 in [0x0A, 0x0D] {
                var from = tail.baseAddress!
                let end = tail.baseAddress! + tail.count
                while from < end, let found = memchr(from, Int32(lineBreak), end - from) {
                    found.storeBytes(of: 0x20, as: UInt8.self)
                    from = found + 1
                }
            }
        }
        line.append(0x0A)
        transcriptBytes += line.count
        if breaker.maxTranscriptBytes > 0 && transcriptBytes > breaker.maxTranscriptBytes {
            decide(Outcome(.circuitBreaker, message: "circuit breaker: the transcript reached \(transcriptBytes) bytes, over maxTranscriptBytes \(breaker.maxTranscriptBytes)"))
        }
        supervisor.onTranscriptLine?(id, line)
        store.append(store.transcriptFile(id), line)
        store.append(store.sessionFile(task.snapshot.sessionID), line)
    }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        if raw {
            receivedRaw(bytes)
            return
        }
        guard !protocolBroken else { return }
        decoder.append(bytes)
        do {
            while let frame = try decoder.next() { handle(frame) }
        } catch {
            protocolBroken = true
            decide(Outcome(.protocol, message: "bad frame from the worker: \(error)"))
        }
    }

    private func handle(_ frame: Frame) {
        record(direction: "in", objectBytes: frame.payload)
        frameCount += 1
        lastFrameAt = supervisor.loop.nowMs
        guard outcome == nil else { return }
        if frame.type != "idle" { idleTimer.stop() }
        var progress = task.snapshot.progress
        switch frame.type {
        case "message":
            let text = frame["text"]?.stringValue ?? ""
            progress.messages += 1
            progress.lastMessage = String(text.prefix(500))
            let role = frame["role"]?.stringValue ?? "assistant"
            if role == "assistant" { lastAssistantText = text }
        case "progress":
            progress.toolCalls += 1
            progress.lastTool = frame["tool"]?.stringValue
            task.snapshot.progress = progress
            if let tripped = circuitBreaker(tool: progress.lastTool ?? "", input: frame["input"] ?? .null, calls: progress.toolCalls) {
                decide(Outcome(.circuitBreaker, message: tripped))
            }
        case "todo":
            openTodos = frame["open"]?.intValue ?? 0
        case "idle":
            idle()
        case "result":
            supervisor.onTrace?(id, .resultFrame)
            decide(Outcome(.result, resultText: frame["text"]?.stringValue ?? lastAssistantText ?? "", resultData: frame["data"]))
        case "error":
            let message = frame["message"]?.stringValue ?? "the worker reported an error"
            let retryable = frame["retryable"]?.boolValue == true
            decide(Outcome(.workerError, message: retryable ? message + " (retryable)" : message))
        case "log":
            let level = frame["level"]?.stringValue ?? "info"
            store.append(store.stderrFile(id), Array("[worker \(level)] \(frame["text"]?.stringValue ?? "")\n".utf8))
        default:
            break  // hello, heartbeat and unknown types: activity, kept in the transcript
        }
        progress.lastUpdateMs = Clock.wallMs()
        task.snapshot.progress = progress
        supervisor.progressChanged(task)
    }

    private func receivedRaw(_ bytes: UnsafeRawBufferPointer) {
        rawTail.append(contentsOf: bytes)
        if rawTail.count > 2 * Self.rawResultBytes { rawTail.removeFirst(rawTail.count - Self.rawResultBytes) }
        for byte in bytes {
            if byte == 0x0A {
                rawMessage()
            } else {
                rawLine.append(byte)
                if rawLine.count >= Self.rawResultBytes { rawMessage() }
            }
        }
    }

    /// Records the pending stdout line of a raw program as a `message`.
    private func rawMessage() {
        let text = String(decoding: rawLine, as: UTF8.self)
        rawLine.removeAll(keepingCapacity: true)
        let frame: JSONObject = ["type": "message", "role": "assistant", "text": .string(text)]
        var bytes: [UInt8] = []
        JSONWriter.writeObject(frame, into: &bytes)
        record(direction: "in", objectBytes: bytes)
        task.snapshot.progress.messages += 1
        task.snapshot.progress.lastMessage = String(text.prefix(500))
        task.snapshot.progress.lastUpdateMs = Clock.wallMs()
        supervisor.progressChanged(task)
    }

    /// A follow-up prompt for a live framed worker, unless the worker has left more than
    /// maxBufferedBytes of earlier input unread.
    func deliver(prompt text: String) -> PromptDelivery {
        guard outcome == nil, !raw, child.isStdinOpen else { return .notRunning }
        let limit = supervisor.config.maxBufferedBytes
        guard child.pendingWriteBytes + text.utf8.count <= limit else {
            return .backlogFull(queuedBytes: child.pendingWriteBytes, limit: limit)
        }
        send(["type": "prompt", "text": .string(text)])
        return .delivered
    }

    /// Which breaker rule a tool call trips, if any, with its numbers.
    private func circuitBreaker(tool: String, input: JSONValue, calls: Int) -> String? {
        let call = tool + " " + JSONWriter.string(input)
        if call == lastToolCall {
            repeatedToolCalls += 1
        } else {
            lastToolCall = call
            repeatedToolCalls = 1
        }
        if breaker.maxToolCalls > 0 && calls > breaker.maxToolCalls {
            return "circuit breaker: \(calls) tool calls, over maxToolCalls \(breaker.maxToolCalls)"
        }
        if breaker.maxRepeatedToolCalls > 0 && repeatedToolCalls > breaker.maxRepeatedToolCalls {
            return "circuit breaker: the same tool call (\(call.prefix(200))) \(repeatedToolCalls) times in a row, over maxRepeatedToolCalls \(breaker.maxRepeatedToolCalls)"
        }
        return nil
    }

    /// A framed worker that closed its stdout can send nothing more, not even a result. If
    /// it has not exited shortly after, it is broken: left alone it would hold its slot until
    /// staleTimeout, or the stability rule would take its last message for a result.
    private func stdoutEnded() {
        guard !raw, outcome == nil, exitStatus == nil else { return }
        outputClosedTimer.start(after: Self.exitGraceMs) { [weak self] in
            guard let self, self.exitStatus == nil else { return }
            self.decide(Outcome(.protocol, message: "the worker closed its stdout but did not exit within \(DurationText.format(milliseconds: Self.exitGraceMs))"))
        }
    }

    // MARK: completion rules

    /// SPEC section 4: an idle earlier than minIdleTime is deferred to that moment; any
    /// other frame in between cancels the deferral. Open todos block it.
    private func idle() {
        guard openTodos == 0 else { return }
        let elapsed = Int(supervisor.loop.nowMs - startedAt)
        if elapsed >= timers.minIdleTime {
            decide(Outcome(.idle, resultText: lastAssistantText ?? ""))
        } else {
            idleTimer.start(after: timers.minIdleTime - elapsed) { [weak self] in
                guard let self, self.openTodos == 0 else { return }
                self.decide(Outcome(.idle, resultText: self.lastAssistantText ?? ""))
            }
        }
    }

    /// The stability rule: enough quiet polls in a row, a message, no open todos.
    private func poll() {
        if frameCount == framesAtLastPoll {
            quietPolls += 1
        } else {
            quietPolls = 0
        }
        framesAtLastPoll = frameCount
        if quietPolls >= timers.stablePolls && lastAssistantText != nil && openTodos == 0 {
            decide(Outcome(.stable, resultText: lastAssistantText ?? ""))
        }
    }

    /// One timer for staleness, re-armed for the remainder when frames came meanwhile,
    /// rather than restarted on every frame.
    private func armStaleTimer(after ms: Int) {
        staleTimer.start(after: ms) { [weak self] in
            guard let self else { return }
            let quiet = Int(self.supervisor.loop.nowMs - self.lastFrameAt)
            if quiet >= self.timers.staleTimeout {
                self.decide(Outcome(.stale, message: "no frame from the worker for \(DurationText.format(milliseconds: quiet)) (staleTimeout \(DurationText.format(milliseconds: self.timers.staleTimeout)))"))
            } else {
                self.armStaleTimer(after: self.timers.staleTimeout - quiet)
            }
        }
    }

    // MARK: ending

    /// Decides how the task ends, once. Returns false if it was already decided.
    @discardableResult
    func decide(_ decided: Outcome) -> Bool {
        guard outcome == nil else { return false }
        outcome = decided
        ttlTimer.stop()
        staleTimer.stop()
        pollTimer.stop()
        idleTimer.stop()
        outputClosedTimer.stop()
        guard exitStatus == nil else { return true }
        switch decided.status {
        case .cancelled:
            terminate(sendCancel: decided.reason)
        case .error where decided.reason == .protocol:
            terminate(sendCancel: nil)
        default:
            // Done by its own account: close stdin and let it leave; end it if it lingers.
            child.closeStdin()
            endTimer.start(after: Self.exitGraceMs) { [weak self] in self?.terminate(sendCancel: nil) }
        }
        return true
    }

    /// `cancel` frame (for cancellations) and SIGTERM to the group, SIGKILL after killGrace.
    private func terminate(sendCancel reason: TaskReason?) {
        if let reason, !raw, child.isStdinOpen {
            send(["type": "cancel", "reason": .string(reason.rawValue)])
            child.closeStdinAfterWrites()
        } else {
            child.closeStdin()
        }
        if timers.killGrace == 0 {
            child.signalGroup(SIGKILL)
            return
        }
        child.signalGroup(SIGTERM)
        endTimer.start(after: timers.killGrace) { [weak self] in self?.child.signalGroup(SIGKILL) }
    }

    private func exited(status: Int64, signal: Int32) {
        supervisor.onTrace?(id, .exited)
        exitStatus = status
        exitSignal = signal
        ttlTimer.stop()
        staleTimer.stop()
        pollTimer.stop()
        idleTimer.stop()
        outputClosedTimer.stop()
        endTimer.start(after: Self.drainGraceMs) { [weak self] in self?.child.abandonOutputs() }
    }

    /// The child is reaped and its pipes are closed: the task ends now.
    private func closed() {
        endTimer.stop()
        let status = Int(exitStatus ?? -1)
        let signal: Int32? = exitSignal != 0 ? exitSignal : nil
        if raw && !rawLine.isEmpty { rawMessage() }
        var usage = TaskCgroups.Usage()
        if let folder = task.cgroup {
            usage = TaskCgroups.usage(of: folder)
            TaskCgroups.remove(folder, loop: supervisor.loop)
            task.snapshot.extra["cgroup"] = .string(folder)
        }
        var final = outcome ?? outcomeFromExit(status: status, signal: signal)
        if usage.oomKills > 0, final.status != .completed, let memory = task.limits.memory {
            final.message = (final.message ?? "the worker ended") + "; the memory limit of \(memory) bytes was reached (the kernel's OOM killer ran \(usage.oomKills) time(s) in the task's cgroup)"
        }
        if usage.forkRefusals > 0, final.status != .completed, let processes = task.limits.processes {
            final.message = (final.message ?? "the worker ended") + "; the processes limit of \(processes) was reached (\(usage.forkRefusals) fork(s) refused in the task's cgroup)"
        }
        if let peak = usage.peakMemoryKiB ?? child.peakMemoryKiB { task.snapshot.extra["peak_rss_kib"] = .number(Double(peak)) }
        if let peak = usage.peakProcesses { task.snapshot.extra["peak_processes"] = .number(Double(peak)) }
        supervisor.end(task, final, exitCode: signal == nil ? status : nil, signal: signal)
    }

    private func outcomeFromExit(status: Int, signal: Int32?) -> Outcome {
        if let signal {
            return Outcome(.signal, message: "the worker was killed by signal \(signal) (\(signalName(signal)))" + limitHint(signal: signal))
        }
        if !raw {
            do {
                try decoder.finish()
            } catch {
                return Outcome(.protocol, message: "bad frame from the worker: \(error)")
            }
        }
        if status != 0 { return Outcome(.exitCode, message: "the worker exited with code \(status)") }
        if raw {
            let tail = rawTail.suffix(Self.rawResultBytes)
            return Outcome(.exit, resultText: String(decoding: tail, as: UTF8.self))
        }
        return Outcome(.exit, resultText: lastAssistantText ?? "")
    }
}

extension TaskRun {
    /// Which of the task's limits a death by this signal points to, if any.
    fileprivate func limitHint(signal: Int32) -> String {
        let limits = task.limits
        if signal == SIGXCPU, let seconds = limits.cpuSeconds { return ": the cpuSeconds limit of \(seconds) s was reached" }
        if signal == SIGXFSZ, let bytes = limits.fileSize { return ": the fileSize limit of \(bytes) bytes was reached" }
        if [SIGSEGV, SIGABRT, SIGBUS, SIGKILL].contains(signal), let bytes = limits.memory {
            return " (with a memory limit of \(bytes) bytes, which may have been reached)"
        }
        return ""
    }
}

func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS",
        SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM",
        SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
    ]
    return names[signal] ?? "signal \(signal)"
}

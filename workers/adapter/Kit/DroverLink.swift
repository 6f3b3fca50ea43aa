import DroverCore
import DroverWire
import Glibc

/// The adapter's side that faces drover, the same for every CLI: the `hello` frame, drover's
/// frames read from stdin, a heartbeat while nothing else went out, and the signals (and end
/// of stdin) that ask the adapter to stop. The run that owns it decides what each means.
final class DroverLink {
    let output: FrameOutput
    private let loop: EventLoop
    private var input: InputPipe?
    private var decoder = FrameDecoder()
    private let heartbeatTimer: LoopTimer
    private var signalWatchers: [LoopSignal] = []

    /// A frame from drover.
    var onFrame: (Frame) -> Void = { _ in }
    /// SIGTERM, SIGINT, SIGHUP, or the end of stdin: drover wants the task stopped (or is gone).
    var onStop: () -> Void = {}
    /// drover's side cannot be read: stdin is no pipe, or a frame was bad.
    var onBroken: (String) -> Void = { _ in }
    /// Whether a quiet spell is worth a heartbeat now (only while a turn runs).
    var wantsHeartbeat: () -> Bool = { false }

    init(loop: EventLoop) {
        self.loop = loop
        output = FrameOutput(fd: 1)
        heartbeatTimer = LoopTimer(loop: loop)
        output.now = { [unowned loop] in loop.nowMs }
    }

    /// Says hello as `worker` and starts listening; a heartbeat follows each quiet `heartbeatMs`.
    func begin(worker: String, heartbeatMs: Int) {
        output.send(["type": "hello", "protocol": 1, "worker": .string(worker), "version": "1"])
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            signalWatchers.append(LoopSignal(loop: loop, signal: signal) { [weak self] in self?.onStop() })
        }
        guard let input = InputPipe(loop: loop, fd: 0) else {
            onBroken("stdin is not a pipe: drover-adapter is a drover worker and reads drover's frames there")
            return
        }
        self.input = input
        input.onBytes = { [weak self] bytes in self?.received(bytes) }
        input.onEnd = { [weak self] in self?.onStop() }
        let tick = max(50, heartbeatMs / 2)
        heartbeatTimer.start(after: tick, repeat: tick) { [weak self] in
            guard let self, self.wantsHeartbeat(), self.loop.nowMs - self.output.lastSentMs >= UInt64(heartbeatMs) else { return }
            self.output.send(["type": "heartbeat"])
        }
    }

    /// The task's one end has gone out (a `result` or an `error`); `answered`: it was a result.
    private(set) var ended = false
    private(set) var answered = false

    /// The task's result, unless its end went out already.
    func sendResult(text: String, data: JSONObject) {
        guard !ended else { return }
        ended = true
        answered = true
        output.send(["type": "result", "text": .string(text), "data": .object(data)])
    }

    /// The task's error, unless its end went out already.
    func sendError(_ message: String, retryable: Bool) {
        guard !ended else { return }
        ended = true
        output.send(["type": "error", "message": .string(message), "retryable": .bool(retryable)])
    }

    /// The adapter's exit status: 0 for an answer; 1 for an error; 143 (as a program ended by
    /// SIGTERM) for a turn cut off by cancel, a signal or drover leaving, so that a cancelled
    /// task never reads as a clean exit.
    func exitCode(stoppedMidTurn: Bool) -> Int32 {
        if answered { return 0 }
        if stoppedMidTurn { return 128 + SIGTERM }
        return ended ? 1 : 0
    }

    /// Stops listening: no more frames, heartbeats or stops. The adapter is leaving by itself
    /// now, and the SIGTERM drover sends with its cancel frame may still be on its way: the
    /// signal watchers stay installed (muted) until the process exits, because closing the
    /// last one puts back the default action, and a SIGTERM landing then would kill the
    /// adapter and its exit would read as a signal.
    func close() {
        heartbeatTimer.stop()
        input?.close()
        onStop = {}
    }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        decoder.append(bytes)
        do {
            while let frame = try decoder.next() { onFrame(frame) }
        } catch {
            onBroken("bad frame from drover: \(error)")
        }
    }
}

import DroverCore
import DroverWire

/// `logs --follow`: every line of a running task's transcript once, in order, until it ends.
/// Lines recorded before the request are read from the file (once the store has written
/// them); lines recorded meanwhile wait here and are sent after them. If those pass half of
/// `maxBufferedBytes` (a chatty task behind a long file), they are dropped and read from
/// the file in a further pass instead, so memory stays bounded either way.
final class TranscriptFollower {
    private unowned let daemon: DaemonServer
    private let taskID: String
    private let connection: ControlConnection
    /// Lines that come from the file: those recorded before the request, and those dropped
    /// from `waiting`.
    private var fileLines: Int
    private var linesRead = 0
    private var fileOffset = 0
    private var waiting: [[UInt8]] = []
    private var waitingBytes = 0
    private var caughtUp = false
    private var taskEnded = false
    private var token: Int?
    private var streamer: LineFileStreamer?

    init(daemon: DaemonServer, taskID: String, connection: ControlConnection) {
        self.daemon = daemon
        self.taskID = taskID
        self.connection = connection
        fileLines = daemon.transcriptLines[taskID] ?? 0
    }

    /// The subscriptions hold the follower until the task ends or the client goes.
    func start() {
        token = daemon.subscribeTranscript(taskID) { [self] line in recorded(line) }
        daemon.whenEnded(taskID) { [self] _ in ended() }
        connection.onClose = { [self] in stop() }
        readFile()
    }

    private func recorded(_ line: [UInt8]) {
        if caughtUp { return connection.send(LogsFrame.lines(String(decoding: line, as: UTF8.self))) }
        waiting.append(line)
        waitingBytes += line.count
        if waitingBytes > daemon.config.maxBufferedBytes / 2 {
            // Every line recorded so far will be in the file: take them from there.
            fileLines = daemon.transcriptLines[taskID] ?? fileLines
            waiting = []
            waitingBytes = 0
        }
    }

    private func readFile() {
        let wanted = fileLines - linesRead
        daemon.store.whenFlushed { [self] in
            guard !connection.isClosed else { return }
            streamer = LineFileStreamer(
                loop: daemon.loop, path: daemon.store.transcriptFile(taskID), from: fileOffset, maxLines: wanted,
                chunkBytes: LineFileStreamer.chunkBytes(daemon.config),
                send: { [connection] in connection.send(encoded: $0, whenWritten: $1) }
            ) { [self] end in
                streamer = nil
                fileOffset = end.offset
                linesRead += wanted - end.missingLines
                // Lines missing from the file would never come: go on live rather than wait.
                if linesRead < fileLines && end.missingLines == 0 { return readFile() }
                catchUp()
            }
        }
    }

    private func catchUp() {
        var chunk: [UInt8] = []
        for line in waiting {
            chunk.append(contentsOf: line)
            if chunk.count >= LineFileStreamer.chunkBytes(daemon.config) {
                connection.send(LogsFrame.lines(String(decoding: chunk, as: UTF8.self)))
                chunk = []
            }
        }
        if !chunk.isEmpty { connection.send(LogsFrame.lines(String(decoding: chunk, as: UTF8.self))) }
        waiting = []
        waitingBytes = 0
        caughtUp = true
        if taskEnded { finish() }
    }

    private func ended() {
        taskEnded = true
        unsubscribe()
        if caughtUp { finish() }
    }

    private func finish() {
        connection.send(LogsFrame.end)
        connection.finish()
    }

    private func stop() {
        unsubscribe()
        streamer?.cancel()
        streamer = nil
    }

    private func unsubscribe() {
        if let token { daemon.unsubscribeTranscript(taskID, token) }
        token = nil
    }
}

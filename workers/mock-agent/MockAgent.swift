// drover-mock-agent: the built-in worker for the demo, the tests and the benchmarks.
// It speaks drover's framed protocol on stdin/stdout and acts out the `@` directives of its
// prompt (SPEC section 10). Single-threaded: every wait is a poll on stdin, so a `cancel`
// or `prompt` frame is seen while it sleeps.
import DroverWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
enum MockAgentMain {
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        let agent = MockAgent()
        agent.run()
    }
}

final class MockAgent {
    private var decoder = FrameDecoder()
    private var start: JSONObject?
    private var prompts: [String] = []
    private var ignoringTerm = false
    private var sentResult = false
    private var lastMessage: String?
    /// The attempt this run is (the start frame's `attempt`, 1-based; 1 when absent).
    private var attempt = 1

    func run() {
        send(["type": "hello", "protocol": 1, "worker": "drover-mock-agent", "version": "1"])
        while start == nil { pump(timeoutMs: -1) }
        let start = self.start!
        let agent = start["agent"]?.stringValue ?? "mock"
        let prompt = start["prompt"]?.stringValue ?? ""
        if let number = start["attempt"]?.intValue, number >= 1 { attempt = number }
        if start["resume"]?.boolValue == true {
            let session = start["session_id"]?.stringValue ?? "?"
            let earlier = countMessages(inTranscript: start["transcript_path"]?.stringValue)
            message("resumed \(session) with \(earlier) earlier messages")
        }
        let lines = prompt.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
        let directives = lines.filter { $0.hasPrefix("@") }
        if directives.isEmpty {
            defaultWork(agent: agent, firstLine: lines.first { !$0.isEmpty } ?? "")
        } else {
            for directive in directives { perform(directive) }
        }
        if !sentResult { send(["type": "result", "text": .string(lastMessage ?? "done")]) }
        exit(0)
    }

    // MARK: default behaviour

    private func defaultWork(agent: String, firstLine: String) {
        let seconds = Double(getenv("DROVER_MOCK_SECONDS").map { String(cString: $0) } ?? "1") ?? 1
        let step = max(0, Int(seconds * 1000 / 4))
        message("\(agent): looking into \(firstLine)")
        wait(milliseconds: step)
        send(["type": "progress", "tool": "grep", "input": ["pattern": .string(firstLine)], "text": "searching"])
        wait(milliseconds: step)
        send(["type": "progress", "tool": "read", "input": ["path": "README.md"], "text": "reading"])
        wait(milliseconds: step)
        message("\(agent): found what matters for \(firstLine)")
        wait(milliseconds: step)
        send(["type": "result", "text": .string("\(agent) finished: \(firstLine)")])
        sentResult = true
    }

    // MARK: directives

    private func perform(_ line: String) {
        let body = line.dropFirst()
        let name: Substring
        let argument: String
        if let space = body.firstIndex(of: " ") {
            name = body[..<space]
            argument = String(body[body.index(after: space)...])
        } else {
            name = body
            argument = ""
        }
        switch name {
        case "sleep":
            wait(milliseconds: duration(argument, line))
        case "busy":
            let deadline = nowMs() + duration(argument, line)
            while nowMs() < deadline {
                send(["type": "heartbeat"])
                wait(milliseconds: min(250, deadline - nowMs()))
            }
        case "message":
            message(argument)
        case "tool":
            let parts = argument.split(separator: " ", maxSplits: 1).map(String.init)
            var input: JSONValue = .object(JSONObject())
            if parts.count > 1 {
                guard let parsed = try? JSONParser.parse(parts[1]).value else { fail("bad JSON in \(line)") }
                input = parsed
            }
            send(["type": "progress", "tool": .string(parts.first ?? "tool"), "input": input, "text": .string(parts.first ?? "tool")])
        case "todo":
            guard let open = Int(argument) else { fail("bad count in \(line)") }
            send(["type": "todo", "open": .number(Double(open)), "total": .number(Double(open))])
        case "idle":
            send(["type": "idle"])
        case "result":
            send(["type": "result", "text": .string(argument)])
            sentResult = true
        case "error":
            send(["type": "error", "message": .string(argument), "retryable": false])
        case "exit":
            guard let code = Int32(argument) else { fail("bad exit code in \(line)") }
            exit(code)
        case "crash":
            // Reset first: the Swift runtime's crash handler would otherwise print a backtrace.
            signal(SIGSEGV, SIG_DFL)
            raise(SIGSEGV)
        case "hang":
            while true { pump(timeoutMs: -1) }
        case "ignore-term":
            signal(SIGTERM, SIG_IGN)
            ignoringTerm = true
        case "spawn-grandchild":
            spawnGrandchild(pidFile: argument)
        case "spawn-detached":
            spawnDetachedGrandchild(pidFile: argument)
        case "half-frame":
            // A frame header that promises more than follows, then gone.
            let text = Array(#"{"type":"message","role":"assistant","text":"cut"#.utf8)
            writeAll(FrameEncoder.header(length: UInt32(text.count * 2)) + text)
            exit(0)
        case "close-stdout":
            // The pipe closes (drover sees EOF) but fd 1 stays valid, so later writes are lost
            // quietly instead of landing in whatever file takes the number next.
            let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
            guard devNull >= 0, dup2(devNull, 1) == 1 else { fail("cannot close stdout") }
            close(devNull)
        case "no-read":
            sleepWithoutReading(milliseconds: argument.isEmpty ? nil : duration(argument, line))
        case "fork-bomb":
            forkBomb()
        case "garbage":
            let text = Array("this is garbage!".utf8)
            writeAll(FrameEncoder.header(length: UInt32(text.count)) + text)
        case "oversize":
            writeAll(FrameEncoder.header(length: 0x8000_0000))
        case "stderr":
            writeAll(Array((argument + "\n").utf8), fd: 2)
        case "echo-env":
            message(getenv(argument).map { String(cString: $0) } ?? "<unset>")
        case "pwd":
            if let cwd = getcwd(nil, 0) {
                message(String(cString: cwd))
                free(cwd)
            } else {
                message("<unknown>")
            }
        case "write":
            // A coding agent's edit: PATH (relative to the working folder) gets TEXT and a newline.
            guard let space = argument.firstIndex(of: " ") else { fail("usage: @write PATH TEXT") }
            let path = String(argument[..<space])
            let text = String(argument[argument.index(after: space)...]) + "\n"
            guard writeFile(path, Array(text.utf8)) else { fail("@write: cannot write \(path): \(String(cString: strerror(errno)))") }
            send(["type": "progress", "tool": "write", "input": ["path": .string(path)], "text": .string("wrote \(path)")])
        case "read":
            guard let bytes = readFile(argument) else { fail("@read: cannot read \(argument): \(String(cString: strerror(errno)))") }
            var text = String(decoding: bytes, as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            message(text)
        case "flood":
            let parts = argument.split(separator: " ")
            guard parts.count == 2, let count = Int(parts[0]), let size = Int(parts[1]) else { fail("usage: @flood N BYTES") }
            let text = String(repeating: "x", count: size)
            for _ in 0..<count { message(text) }
        case "await-prompt":
            while prompts.isEmpty { pump(timeoutMs: -1) }
            message(prompts.removeFirst())
        case "fail-attempts":
            // `@fail-attempts N [D]`: attempts 1..N are refused as by a rate limit.
            let parts = argument.split(separator: " ").map(String.init)
            guard (1...2).contains(parts.count), let failing = Int(parts[0]), failing >= 0 else { fail("usage: @fail-attempts N [D]") }
            let retryAfter = parts.count == 2 ? duration(parts[1], line) : nil
            guard attempt <= failing else { break }
            rateLimit(retryAfterMs: retryAfter, message: "mock rate limit on attempt \(attempt) of \(failing) failing")
            send(["type": "error", "message": .string("rate limited on attempt \(attempt) (fails attempts 1 to \(failing))"), "retryable": true])
            exit(1)
        case "rate-limit":
            rateLimit(retryAfterMs: argument.isEmpty ? nil : duration(argument, line), message: "mock rate limit")
        case "usage":
            let parts = argument.split(separator: " ").map(String.init)
            guard (2...3).contains(parts.count), let input = Int(parts[0]), let output = Int(parts[1]), input >= 0, output >= 0 else {
                fail("usage: @usage IN OUT [COST]")
            }
            var frame: JSONObject = ["type": "usage", "input_tokens": .number(Double(input)), "output_tokens": .number(Double(output))]
            if parts.count == 3 {
                guard let cost = Double(parts[2]), cost.isFinite, cost >= 0 else { fail("bad cost in \(line)") }
                frame["cost_usd"] = .number(cost)
            }
            send(frame)
        case "attempt":
            message("attempt \(attempt)")
        default:
            fail("unknown directive \(line)")
        }
    }

    private func rateLimit(retryAfterMs: Int?, message: String) {
        var frame: JSONObject = ["type": "rate_limit"]
        if let retryAfterMs { frame["retry_after_ms"] = .number(Double(retryAfterMs)) }
        frame["scope"] = "provider"
        frame["message"] = .string(message)
        send(frame)
    }

    private func duration(_ text: String, _ line: String) -> Int {
        guard let ms = DurationText.milliseconds(text) else { fail("bad duration in \(line)") }
        return ms
    }

    private func spawnGrandchild(pidFile: String) {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("100000"), nil]
        defer { argv.forEach { free($0) } }
        let rc = posix_spawnp(&pid, "sleep", nil, nil, argv, environ)
        guard rc == 0 else { fail("cannot spawn grandchild: errno \(rc)") }
        let text = "\(pid)\n"
        let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fail("cannot write \(pidFile)") }
        writeAll(Array(text.utf8), fd: fd)
        close(fd)
    }

    /// A grandchild that calls setsid: it leaves the task's session and process group, so
    /// a group kill misses it.
    private func spawnDetachedGrandchild(pidFile: String) {
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("100000"), nil]
        defer { argv.forEach { free($0) } }
        let pid = fork()
        if pid == 0 {
            _ = setsid()
            execvp("sleep", argv)
            _exit(127)
        }
        guard pid > 0 else { fail("cannot fork: errno \(errno)") }
        let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fail("cannot write \(pidFile)") }
        writeAll(Array("\(pid)\n".utf8), fd: fd)
        close(fd)
    }

    /// Forks until the kernel refuses (a `processes` limit). Each child forks once more and
    /// then sleeps, so the group holds children and grandchildren. Gives up after 1,000 forks:
    /// no limit held, and the task ends in error.
    private func forkBomb() {
        let maxForks = 1000
        var forks = 0
        var refusal: Int32 = 0
        while forks < maxForks {
            let pid = fork()
            if pid == 0 {
                if fork() == 0 { while true { pause() } }
                while true { pause() }
            }
            if pid < 0 {
                refusal = errno
                break
            }
            forks += 1
        }
        guard refusal != 0 else { fail("fork bomb: \(maxForks) forks and no limit stopped it") }
        message("fork bomb: \(forks) forks, then fork failed: \(String(cString: strerror(refusal)))")
    }

    /// Sleeps without touching stdin (nil: for ever), so whatever drover writes piles up.
    private func sleepWithoutReading(milliseconds: Int?) {
        guard let milliseconds else { while true { sleep(3600) } }
        let deadline = nowMs() + milliseconds
        while nowMs() < deadline { usleep(UInt32(min(100, deadline - nowMs())) * 1000) }
    }

    private func countMessages(inTranscript path: String?) -> Int {
        guard let path, let bytes = readFile(path) else { return 0 }
        var count = 0
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            if let object = try? JSONParser.parse(line).value.objectValue, object["type"]?.stringValue == "message" {
                count += 1
            }
        }
        return count
    }

    // MARK: frames in

    /// Waits up to `timeoutMs` (-1: forever) for stdin, and handles what arrives.
    private func pump(timeoutMs: Int) {
        var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(clamping: timeoutMs))
        guard ready > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { return }
            stdinClosed()
            return
        }
        if count == 0 {
            stdinClosed()
            return
        }
        buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        while true {
            let frame: Frame?
            do {
                frame = try decoder.next()
            } catch {
                fail("bad frame from drover: \(error)")
            }
            guard let frame else { break }
            switch frame.type {
            case "start": start = frame.object
            case "prompt": prompts.append(frame["text"]?.stringValue ?? "")
            case "cancel": if !ignoringTerm { exit(0) }
            default: break
            }
        }
    }

    private func stdinClosed() {
        // drover closes stdin once it has decided the task; a cooperative worker leaves.
        // After @ignore-term the mock plays an unresponsive one and sleeps on.
        if !ignoringTerm { exit(0) }
        while true { sleep(3600) }
    }

    private func wait(milliseconds: Int) {
        let deadline = nowMs() + milliseconds
        while true {
            let remaining = deadline - nowMs()
            if remaining <= 0 { return }
            pump(timeoutMs: remaining)
        }
    }

    // MARK: frames out

    private func message(_ text: String) {
        send(["type": "message", "role": "assistant", "text": .string(text)])
        lastMessage = text
    }

    private func send(_ object: JSONObject) {
        writeAll(FrameEncoder.encode(object))
    }

    private func writeAll(_ bytes: [UInt8], fd: Int32 = 1) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                exit(fd == 1 ? 0 : 1)  // drover is gone or stopped listening: nothing left to do
            }
            offset += written
        }
    }

    private func fail(_ text: String) -> Never {
        writeAll(Array("drover-mock-agent: \(text)\n".utf8), fd: 2)
        send(["type": "error", "message": .string(text), "retryable": false])
        exit(2)
    }
}

private func nowMs() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
}

private func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}

/// Creates or replaces a file (its folder must exist).
private func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}

import DroverCore
import DroverDaemon
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The control protocol against a real daemon over its real socket: strict requests,
/// cancel's answer, and connections that cannot hold the daemon hostage (SPEC 16.6, 16.7).
@Suite struct ControlProtocolTests {
    func socket(_ d: DaemonFixture) -> String { d.state + "/drover.sock" }

    func client(_ d: DaemonFixture) throws -> ControlClient {
        try ControlClient.connect(state: StateFolder(explicit: d.state, environment: [:]), autostart: false)
    }

    /// Sends one request frame as written and returns the daemon's only answer.
    func answer(_ d: DaemonFixture, json: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONObject {
        let connection = try RawConnection(socket(d))
        connection.send(json: json)
        let frames = try #require(connection.framesUntilClosed(timeoutMs: 5000), "no answer to \(json)", sourceLocation: sourceLocation)
        try #require(frames.count == 1, "\(json) got \(frames.count) frames", sourceLocation: sourceLocation)
        return frames[0]
    }

    static let badRequests: [(String, String)] = [
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "ttl_ms": -5}"#,
         #"launch: "ttl_ms" must be a whole number of milliseconds of 0 or more, found -5"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "ttl_ms": 1.5}"#, #""ttl_ms" must be a whole number of milliseconds of 0 or more, found 1.5"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "ttl_ms": "10s"}"#, #""ttl_ms" must be a whole number of milliseconds of 0 or more, found a string"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "env": ["A=1"]}"#, #"launch: "env" must be an object, found an array"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "env": {"A=B": "1"}}"#, #"launch: "env" names must be non-empty, without "=""#),
        (#"{"type": "launch", "command": ["/bin/echo", "a\u0000b"]}"#, #"launch: "command[1]" must not contain a NUL byte"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "promt": "y"}"#, #"launch: unknown key "promt""#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "limits": {"memroy": 1}}"#, #"unknown key "limits.memroy""#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "staleTimeout": "soon"}"#, #""staleTimeout" must be a duration"#),
        (#"{"type": "launch", "agent": "explore", "prompt": "x", "ttl": "1m", "ttl_ms": 5}"#, #"the same setting"#),
        (#"{"type": "launch", "agent": "explore"}"#, #"launch: needs "prompt""#),
        (#"{"type": "launch", "agent": "nobody", "prompt": "x"}"#, #"launch: unknown agent "nobody""#),
        (#"{"type": "cancel", "ids": "bg_12345678"}"#, #"cancel: "ids" must be an array of task ids, found a string"#),
        (#"{"type": "cancel", "all": "true"}"#, #"cancel: "all" must be true or false, found a string"#),
        (#"{"type": "cancel", "idz": ["bg_12345678"]}"#, #"cancel: unknown key "idz" (known: all, ids)"#),
        (#"{"type": "cancel", "ids": []}"#, #"cancel: "ids" must name at least one task"#),
        (#"{"type": "cancel"}"#, #"cancel: needs "ids""#),
        (#"{"type": "cancel", "ids": ["bg_12345678"], "all": true}"#, #"not both"#),
        (#"{"type": "status", "ids": [7]}"#, #"status: "ids[0]" must be a string, found a number"#),
        (#"{"type": "output"}"#, #"output: needs "id""#),
        (#"{"type": "output", "id": "bg_12345678", "timeout_ms": 5}"#, #"output: "timeout_ms" needs "wait": true"#),
        (#"{"type": "wait", "all": true, "timeout_ms": -1}"#, #"wait: "timeout_ms" must be a whole number of milliseconds"#),
        (#"{"type": "continue", "session": "ses_12345678", "prompt": ""}"#, #"continue: "prompt" must not be empty"#),
        (#"{"type": "logs", "id": "bg_12345678", "follow": "yes"}"#, #"logs: "follow" must be true or false"#),
        (#"{"type": "events", "follow": true, "since": 0}"#, #"events: unknown key "since" (known: follow)"#),
        (#"{"type": "ping", "x": 1}"#, #"ping: unknown key "x""#),
        (#"{"type": "nonsense"}"#, #"unknown request type "nonsense" (known: launch, status"#),
        (#"{"type": 5}"#, #"frame at byte 0 has no string field "type""#),
    ]

    @Test func aBadRequestIsAnsweredWithTheFieldAndNothingIsDone() throws {
        let d = try DaemonFixture()
        let running = try d.launch("@message working\n@hang")
        #expect(eventually { (try? d.status(running)) == "running" })
        for (request, message) in Self.badRequests {
            let frame = try answer(d, json: request)
            #expect(frame["type"] == "error" && frame["code"] == 2, "\(request): \(frame)")
            #expect(frame["message"]?.stringValue?.contains(message) == true, "\(request): \(frame["message"]?.stringValue ?? "")")
        }
        // Not even a well-formed cancel of the running task slipped through.
        let malformed = try answer(d, json: #"{"type": "cancel", "ids": "\#(running)"}"#)
        #expect(malformed["type"] == "error")
        #expect(try d.status(running) == "running")
        #expect(FileSystem.list(d.state + "/tasks") == [running], "a refused launch created a task")
        _ = try d.ok(["cancel", running])
    }

    @Test func cancelSaysWhichItCancelledAndWhichHadEnded() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 4}")
        _ = try d.ok(["status"])
        let early = try client(d).call(LaunchRequest(task: TaskRequest(agent: "explore", prompt: "@result early"))).taskID
        _ = try client(d).call(OutputRequest(id: early, wait: true))
        // Four tasks hold the pool's slots until they get a prompt; behind them wait tasks
        // that end at once. The prompts release them all, and the cancel comes while they
        // drain through the pool: the race the answer must get right.
        let launch = { (prompt: String) throws -> LaunchReply in
            try client(d).call(LaunchRequest(task: TaskRequest(agent: "explore", prompt: prompt)))
        }
        let blockers = try (0..<4).map { _ in try launch("@await-prompt\n@result released") }
        #expect(eventually { blockers.allSatisfy { (try? d.status($0.taskID)) == "running" } })
        let racing = try (0..<120).map { try launch("@result r\($0)").taskID }
        let hanging = try launch("@message busy\n@hang").taskID
        for blocker in blockers {
            _ = try client(d).call(ContinueRequest(session: blocker.sessionID, prompt: "go"))
        }
        usleep(150_000)
        let asked = [early] + blockers.map(\.taskID) + racing + [hanging]
        let answer = try client(d).call(CancelRequest(.ids(asked)))

        let cancelled = Set(answer.cancelled)
        let alreadyEnded = Set(answer.alreadyEnded)
        #expect(answer.cancelled.count + answer.alreadyEnded.count == asked.count, "an id is listed twice")
        #expect(cancelled.isDisjoint(with: alreadyEnded))
        #expect(cancelled.union(alreadyEnded) == Set(asked))
        #expect(alreadyEnded.contains(early) && cancelled.contains(hanging))
        #expect(answer.tasks.map(\.id) == asked && answer.tasks.allSatisfy { $0.status.isTerminal })
        for id in asked {
            let task = try d.task(id)
            let cancelledByUser = task["status"] == "cancelled" && task["reason"] == "user"
            #expect(cancelledByUser == cancelled.contains(id), "\(id) is \(task["status"] ?? nil) (\(task["reason"] ?? nil)) in task.json")
        }
        // The CLI prints from the same lists: asked again, every one had ended.
        let again = try d.run(["cancel", "--json"] + asked)
        #expect(again.status == 0, "\(again.stderr)")
        let document = try parseObject(again.stdout)
        #expect(document["cancelled"] == [] && document["already_ended"]?.arrayValue?.count == asked.count)
        let text = try d.ok(["cancel", early, hanging])
        #expect(text.hasPrefix("Cancelled 0 background task(s):") && text.contains("Already ended: \(early) (completed), \(hanging) (cancelled (user))"))
    }

    @Test func aConnectionThatSendsNoWholeRequestIsClosedAfter10Seconds() throws {
        let d = try DaemonFixture()
        _ = try d.ok(["status"])
        let silent = try RawConnection(socket(d))
        let halfway = try RawConnection(socket(d))
        halfway.send(Array(FrameEncoder.encode(["type": "status"]).prefix(6)))
        let frames = try #require(silent.framesUntilClosed(timeoutMs: 15_000), "a silent connection was held past 15 s")
        #expect(frames.count == 1 && frames.first?["message"]?.stringValue?.contains("no whole request within 10 s") == true, "\(frames)")
        #expect(halfway.framesUntilClosed(timeoutMs: 5000)?.first?["type"] == "error", "a half-sent request was held")
        #expect(try d.ok(["status"]) == "No background tasks.")
    }

    @Test func connectionsPastMaxConnectionsAreRefusedAtOnce() throws {
        let d = try DaemonFixture(settings: "\"maxConnections\": 3")
        _ = try d.ok(["status"])
        var held = try (0..<3).map { _ in try RawConnection(socket(d)) }
        let extra = try RawConnection(socket(d))
        // Refused well before the request deadline would close it.
        guard case .frame(let refusal) = extra.next(timeoutMs: 5000) else {
            Issue.record("a connection past maxConnections got no answer")
            return
        }
        #expect(refusal["type"] == "error" && refusal["code"] == 5)
        #expect(refusal["message"]?.stringValue?.contains("maxConnections") == true)
        #expect(extra.framesUntilClosed(timeoutMs: 5000) != nil, "the refused connection stayed open")
        let cli = try d.run(["status", "--no-autostart"])
        #expect(cli.status == 5 && cli.stderr.contains("maxConnections"), "\(cli.stderr)")
        held.removeAll()  // closes them
        #expect(eventually { (try? d.run(["status", "--no-autostart"]).status) == 0 })
    }

    @Test func aRequestOverMaxFrameBytesIsAnsweredWithTheLimit() throws {
        let d = try DaemonFixture()
        _ = try d.ok(["status"])
        let prompt = d.folder + "/big-prompt.txt"
        try FileSystem.writeFile(prompt, [UInt8](repeating: UInt8(ascii: "a"), count: 20 << 20))
        let result = try d.run(["launch", "--agent", "explore", "--prompt-file", prompt])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("is over the limit of 16777216 (maxFrameBytes)"), "\(result.stderr)")
        #expect(!result.stderr.contains("Broken pipe"))
        #expect(FileSystem.list(d.state + "/tasks").isEmpty)
        #expect(try d.ok(["status"]) == "No background tasks.")
    }

    @Test func logsOfALargeTranscript() throws {
        let d = try DaemonFixture()
        let ended = try d.launch("@flood 40 500000\n@result done")
        _ = try d.ok(["wait", ended])
        let transcript = readText(d.state + "/tasks/\(ended)/transcript.jsonl")
        #expect(transcript.utf8.count > 20_000_000)
        #expect(try d.run(["logs", ended, "--json"]).stdout == transcript)

        // Followed while it floods: every line once, in order, from the file and then live.
        let flooding = try d.launch("@flood 1500 20000\n@sleep 300ms\n@message tail\n@result done")
        let file = d.state + "/tasks/\(flooding)/transcript.jsonl"
        #expect(eventually(withinMs: 20_000) { readText(file).utf8.count > 1_000_000 })
        let followed = try d.run(["logs", flooding, "--follow", "--json"])
        #expect(followed.status == 0, "\(followed.stderr)")
        #expect(try d.status(flooding) == "completed")
        let lines = followed.stdout.split(separator: "\n")
        let recorded = readText(file).split(separator: "\n")
        #expect(lines.count == recorded.count)
        #expect(followed.stdout == readText(file), "logs --follow lost, repeated or reordered lines")
    }
}

@testable import DroverCore
import DroverTestSupport
import DroverWire
import Testing

/// The one reader of task requests: manifest lines, launch requests and task.json agree.
@Suite struct TaskRequestDecodingTests {
    func object(_ text: String) throws -> JSONObject { try parseObject(text) }

    static let everyKey = """
        {"agent": "explore", "prompt": "look", "description": "d", "provider": "p", "model": "m", "cwd": "/tmp",
         "env": {"A": "1", "B": ""}, "workdir": "task", "limits": {"memory": "512M", "cpuSeconds": 30},
         "ttl": "90s", "staleTimeout": "3m", "queuedTtl": 5000, "pollInterval": "1s", "minStabilityTime": "2s",
         "stablePolls": 4, "minIdleTime": "0s", "killGrace": "250ms",
         "maxToolCalls": 100, "maxRepeatedToolCalls": 5, "maxTranscriptBytes": "1M"}
        """

    /// An empty prompt is refused as a missing one is, wherever a request comes from; a raw
    /// command's prompt is only its stdin and may be empty; a task file is read as written.
    @Test func aBlankPromptIsRefusedLikeAMissingOne() throws {
        for prompt in ["", "   ", " \\n\\t "] {
            let row = try object(#"{"agent": "explore", "prompt": "\#(prompt)"}"#)
            for source in [TaskRequestSource.manifestLine, .launch] {
                #expect {
                    _ = try TaskRequest.decode(row, from: source)
                } throws: { error in
                    (error as? FieldError)?.field == "prompt" && "\(error)".contains("is empty: give the agent its instructions")
                }
            }
            _ = try TaskRequest.decode(row, from: .taskFile)
        }
        let command = try TaskRequest.decode(object(#"{"command": ["/bin/true"], "prompt": ""}"#), from: .manifestLine)
        #expect(command.command == ["/bin/true"] && command.prompt == "")
    }

    @Test func everyPerTaskSettingIsReadByItsConfigName() throws {
        let request = try TaskRequest.decode(object(Self.everyKey), from: .manifestLine, agents: ["explore"])
        #expect(request.agent == "explore" && request.prompt == "look" && request.description == "d")
        #expect(request.provider == "p" && request.model == "m" && request.cwd == "/tmp")
        #expect(request.env == ["A": "1", "B": ""])
        #expect(request.workdir == .task)
        #expect(request.limits.memory == 512 << 20 && request.limits.cpuSeconds == 30)
        var timers = TimerSettings()
        (timers.taskTtl, timers.staleTimeout, timers.queuedTtl, timers.pollInterval) = (90_000, 180_000, 5000, 1000)
        (timers.minStabilityTime, timers.stablePolls, timers.minIdleTime, timers.killGrace) = (2000, 4, 0, 250)
        #expect(request.timers == timers)
        #expect(request.breaker.maxToolCalls == 100 && request.breaker.maxRepeatedToolCalls == 5)
        #expect(request.breaker.maxTranscriptBytes == 1 << 20)
    }

    @Test func aLaunchReadsTheSameFieldsPlusSessionAndTtlMs() throws {
        let fromManifest = try TaskRequest.decode(object(Self.everyKey), from: .manifestLine)
        var launch = try object(Self.everyKey)
        launch["session"] = "ses_0000abcd"
        var fromLaunch = try TaskRequest.decode(launch, from: .launch)
        #expect(fromLaunch.sessionID == "ses_0000abcd")
        fromLaunch.sessionID = nil
        #expect(fromLaunch == fromManifest)
        let old = try TaskRequest.decode(object(#"{"agent": "explore", "prompt": "x", "ttl_ms": 1500}"#), from: .launch)
        #expect(old.timers.taskTtl == 1500)
        // A manifest line has no session, and ttl_ms is only for older launch clients.
        for key in ["\"session\": \"ses_0000abcd\"", "\"ttl_ms\": 5"] {
            #expect(throws: FieldError.self) { try TaskRequest.decode(try object("{\"agent\": \"explore\", \"prompt\": \"x\", \(key)}"), from: .manifestLine) }
        }
    }

    @Test func taskJSONKeepsTheRequestInTheShapeTheDecoderReads() throws {
        var request = try TaskRequest.decode(object(Self.everyKey), from: .manifestLine)
        request.sessionID = "ses_00000001"
        request.resume = true
        let stored = request.json()
        #expect(stored["prompt"] == nil && stored["description"] == nil, "task.json has its own prompt and description")
        #expect(stored["staleTimeout"] == 180_000 && stored["maxToolCalls"] == 100 && stored["workdir"] == "task")
        let snapshot = TaskSnapshot(id: "bg_00000001", sessionID: "ses_00000001", agent: "explore", provider: "p", model: "m",
                                    key: "p/m", description: "d", prompt: "look", createdMs: 0, ttlMs: 90_000, pool: "key:p/m")
        let back = try #require(TaskRequest(json: stored, snapshot: snapshot))
        #expect(back == request)

        let command = TaskRequest(command: ["/bin/echo", "{prompt}"], prompt: "hi")
        let commandBack = try TaskRequest.stored(command.json(), snapshot: snapshot)
        #expect(commandBack.command == ["/bin/echo", "{prompt}"] && commandBack.agent == nil && commandBack.prompt == "look")
    }

    @Test func aStoredRequestOfTheEarlierNestedShapeStillReads() throws {
        let legacy = try object("""
            {"agent": "explore", "cwd": "/tmp", "timers": {"taskTtl": 1000, "stablePolls": 0},
             "breaker": {"maxToolCalls": 7}, "workdir_per_task": true, "resume": true}
            """)
        let snapshot = TaskSnapshot(id: "bg_00000002", sessionID: "ses_00000002", agent: "explore", provider: nil, model: nil,
                                    key: "explore", description: "d", prompt: "p", createdMs: 0, ttlMs: 1000, pool: "key:explore")
        let request = try TaskRequest.stored(legacy, snapshot: snapshot)
        #expect(request.timers.taskTtl == 1000 && request.timers.stablePolls == 0)
        #expect(request.breaker.maxToolCalls == 7 && request.workdir == .task && request.resume)
    }

    @Test func theSupervisorsTaskJSONReadsBack() throws {
        let h = try Harness()
        let id = try h.submit("@result stored") {
            $0.env = ["X": "y"]
            $0.timers.staleTimeout = 60_000
            $0.breaker.maxToolCalls = 9
        }
        h.run(until: [id])
        let json = try h.taskJSON(id)
        let snapshot = try #require(TaskSnapshot(json: json))
        let request = try TaskRequest.stored(try #require(json["request"]?.objectValue), snapshot: snapshot)
        #expect(request.env == ["X": "y"] && request.timers.staleTimeout == 60_000 && request.breaker.maxToolCalls == 9)
        #expect(request.prompt == "@result stored" && request.cwd == FileSystem.currentDirectory())
    }

    /// Each wrong field is refused with a message that names it.
    @Test(arguments: [
        (#"{"agent": "explore", "prompt": "x", "idz": 1}"#, "idz", "unknown key \"idz\" (known: after, agent,"),
        (#"{"agent": 5, "prompt": "x"}"#, "agent", "\"agent\" must be a string, found a number"),
        (#"{"agent": "explore", "command": ["/bin/true"]}"#, "agent", "not both"),
        (#"{"command": "/bin/true"}"#, "command", "\"command\" must be an array of strings (an argv), found a string"),
        (#"{"command": ["/bin/echo", 3]}"#, "command[1]", "\"command[1]\" must be a string, found a number"),
        (#"{"command": ["/bin/echo", "a\u0000b"]}"#, "command[1]", "\"command[1]\" must not contain a NUL byte"),
        (#"{"command": [""]}"#, "command[0]", "must not be empty"),
        (#"{"agent": "explore", "prompt": "x", "env": ["A=1"]}"#, "env", "\"env\" must be an object, found an array"),
        (#"{"agent": "explore", "prompt": "x", "env": {"A=B": "1"}}"#, "env.A=B", "without \"=\""),
        (#"{"agent": "explore", "prompt": "x", "env": {"": "1"}}"#, "env.", "non-empty"),
        (#"{"agent": "explore", "prompt": "x", "env": {"A": 1}}"#, "env.A", "\"env.A\" must be a string, found a number"),
        (#"{"agent": "explore", "prompt": "x", "env": {"A": "a\u0000"}}"#, "env.A", "NUL"),
        (#"{"agent": "explore", "prompt": "x", "cwd": "/t\u0000mp"}"#, "cwd", "NUL"),
        (#"{"agent": "explore", "prompt": "x", "workdir": "/tmp"}"#, "workdir", "is \"task\" (a fresh folder under the task's folder) or \"worktree\""),
        (#"{"agent": "explore", "prompt": "x", "workdir": "worktree", "base": "--upload-pack=x"}"#, "base", "must be a commit, branch or tag"),
        (#"{"agent": "explore", "prompt": "x", "workdir": "worktree", "base": "@no such row"}"#, "base", "no such row"),
        (#"{"agent": "explore", "prompt": "x", "workdir": "worktree", "commit": "yes"}"#, "commit", "must be true or false"),
        (#"{"agent": "explore", "prompt": "x", "ttl": "soon"}"#, "ttl", "\"ttl\" must be a duration"),
        (#"{"agent": "explore", "prompt": "x", "ttl": -5}"#, "ttl", "found -5"),
        (#"{"agent": "explore", "prompt": "x", "ttl": "5s", "taskTtl": "5s"}"#, "taskTtl", "the same setting"),
        (#"{"agent": "explore", "prompt": "x", "staleTimeout": true}"#, "staleTimeout", "\"staleTimeout\" must be a duration"),
        (#"{"agent": "explore", "prompt": "x", "stablePolls": 1.5}"#, "stablePolls", "\"stablePolls\" must be a whole number"),
        (#"{"agent": "explore", "prompt": "x", "maxToolCalls": -1}"#, "maxToolCalls", "\"maxToolCalls\" must be a whole number"),
        (#"{"agent": "explore", "prompt": "x", "maxTranscriptBytes": "lots"}"#, "maxTranscriptBytes", "must be a size in bytes"),
        (#"{"agent": "explore", "prompt": "x", "limits": {"memroy": 1}}"#, "limits.memroy", "unknown key \"limits.memroy\""),
        (#"{"agent": "explore", "prompt": "x", "limits": {"memory": "lots"}}"#, "limits.memory", "\"limits.memory\" must be a size"),
        (#"{"agent": "explore"}"#, "prompt", "needs \"prompt\""),
        (#"{"prompt": "x"}"#, "agent", "needs \"agent\""),
    ])
    func badFieldsAreNamed(text: String, field: String, message: String) throws {
        let row = try object(text)
        do {
            _ = try TaskRequest.decode(row, from: .manifestLine)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.field == field, "\(text): \(error.message)")
            #expect(error.message.contains(message), "\(text): \(error.message)")
        }
    }

    @Test func launchOnlyChecks() throws {
        for (text, message) in [
            (#"{"agent": "explore", "prompt": "x", "ttl_ms": -5}"#, "\"ttl_ms\" must be a whole number of milliseconds of 0 or more, found -5"),
            (#"{"agent": "explore", "prompt": "x", "ttl_ms": 1.5}"#, "found 1.5"),
            (#"{"agent": "explore", "prompt": "x", "ttl_ms": "10s"}"#, "found a string"),
            (#"{"agent": "explore", "prompt": "x", "session": 3}"#, "\"session\" must be a string"),
        ] {
            let row = try object(text)
            do {
                _ = try TaskRequest.decode(row, from: .launch)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }

    @Test func manifestErrorsKeepFileAndLine() {
        do {
            _ = try Manifest.parse(Array("{\"command\": [\"/bin/true\"]}\n{\"command\": [\"/bin/true\"], \"env\": {\"A=B\": \"1\"}}\n".utf8),
                                   file: "m.jsonl", config: DroverConfig())
            Issue.record("accepted an env name with =")
        } catch {
            #expect(error.description.hasPrefix("m.jsonl:2: \"env\" names must be"), "\(error)")
        }
    }
}

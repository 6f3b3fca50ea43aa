import DroverCore
import DroverDaemon
import DroverTestSupport
import DroverWire
import Testing

/// The typed messages without a daemon: what the clients write, the daemon reads back the
/// same, and the answers the daemon builds, the clients read back the same.
@Suite struct ControlProtocolMessageTests {
    static var launchTask: TaskRequest {
        var task = TaskRequest(agent: "explore", prompt: "look\naround", description: "look")
        task.provider = "anthropic"
        task.model = "claude"
        task.cwd = "/tmp"
        task.env = ["A": "1"]
        task.timers.taskTtl = 60_000
        task.timers.stablePolls = 0
        task.breaker.maxToolCalls = 10
        task.limits.memory = 1 << 30
        task.workdir = .task
        task.sessionID = "ses_0000beef"
        task.resume = true
        return task
    }

    static let requests: [ControlRequest] = [
        .launch(LaunchRequest(task: launchTask)),
        .launch(LaunchRequest(task: TaskRequest(command: ["/bin/echo", "{prompt}"], prompt: "hi"))),
        .status(StatusRequest()), .status(StatusRequest(ids: ["bg_00000001", "bg_00000002"])),
        .output(OutputRequest(id: "bg_00000001")), .output(OutputRequest(id: "bg_00000001", wait: true, timeoutMs: 500)),
        .cancel(CancelRequest(.all)), .cancel(CancelRequest(.ids(["bg_00000001"]))),
        .continue(ContinueRequest(session: "ses_00000001", prompt: "more", description: "d")),
        .wait(WaitRequest(.all, timeoutMs: 100)), .wait(WaitRequest(.ids(["bg_00000001"]))),
        .logs(LogsRequest(id: "bg_00000001", follow: true)), .events(EventsRequest(follow: true)),
        .shutdown(ShutdownRequest()), .ping(PingRequest()), .stats(StatsRequest()), .metrics(MetricsRequest()),
    ]

    @Test(arguments: requests)
    func aRequestReadsBackAsItWasWritten(request: ControlRequest) throws {
        let decoded = try ControlRequest.decode(request.json)
        #expect(decoded.json == request.json)
    }

    @Test func aLaunchCarriesTheWholeTaskRequest() throws {
        guard case .launch(let launch) = try ControlRequest.decode(LaunchRequest(task: Self.launchTask).json()) else {
            Issue.record("not a launch")
            return
        }
        #expect(launch.task == Self.launchTask)
    }

    @Test func answersReadBackAsTheDaemonBuiltThem() throws {
        let row: JSONObject = ["id": "bg_00000001", "session_id": "ses_00000001", "status": "completed", "agent": "explore"]
        let task = try TaskDocument(json: row)
        let replies: [any ControlReply] = [
            LaunchReply(taskID: "bg_00000001", sessionID: "ses_00000001", status: .pending),
            LaunchReply(taskID: "bg_00000001", sessionID: "ses_00000001", status: .running, delivered: true),
            TasksReply(tasks: [task, task]),
            OutputReply(task: task, result: "the answer"), OutputReply(task: task, result: nil, timedOut: true),
            CancelReply(tasks: [task], cancelled: [], alreadyEnded: ["bg_00000001"]),
            PingReply(pid: 42), ShutdownReply(message: "stopped"), MetricsReply(text: "# TYPE drover_tasks gauge\ndrover_tasks 1.0\n"),
            StatsReply(pid: 1, running: 2, pending: 3, slotsInUse: 2, tasks: 9, pools: [.init(id: "key:x", limit: 5, running: 2, waiting: 3)], openDescriptors: 12, baselineDescriptors: 10),
            WaitFrame.progress(WaitCounts()), WaitFrame.finished(WaitCounts(), tasks: [task], timedOut: true),
            LogsFrame.lines("a\nb\n"), LogsFrame.end,
            EventsFrame.following, EventsFrame.lines("{}\n"), EventsFrame.end,
            EventsFrame.event(TaskEvent(atMs: 5, taskID: "bg_00000001", sessionID: "ses_00000001", status: .cancelled, reason: .user)),
            ErrorReply(code: 6, message: "no such task: bg_00000001"),
        ]
        for reply in replies {
            let frame = reply.frame()
            let again = try type(of: reply).init(frame: frame)
            #expect(again.frame() == frame, "\(frame)")
        }
    }

    @Test func aMalformedAnswerIsRefusedNamingTheField() {
        for (frame, message) in [
            (["type": "ok", "session_id": "ses_00000001", "status": "pending"] as JSONObject, "needs \"task_id\""),
            (["type": "ok", "task_id": "bg_00000001", "session_id": "ses_00000001", "status": "later"], "unknown task status \"later\""),
            (["type": "progress", "task_id": "bg_00000001"], "expected a \"ok\" frame, found \"progress\""),
        ] {
            do {
                _ = try LaunchReply(frame: frame)
                Issue.record("accepted \(frame)")
            } catch {
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }
}

import DroverCore
import DroverDaemon
import DroverWire
import Testing

/// `drover top`'s screen as a pure function: sizes, cuts, the selection, and keys.
@Suite struct TopScreenTests {
    static let now: Int64 = 1_800_000_000_000

    static func task(_ id: String, status: String, agent: String = "explore", startedAgoMs: Int64? = nil, endedAgoMs: Int64? = nil,
                     waitingFor: String? = nil, message: String? = nil, tool: String? = nil, cost: Double? = nil, description: String = "a task") -> TopView.Task {
        var json: JSONObject = ["id": .string(id), "session_id": "ses_00000000", "agent": .string(agent), "status": .string(status),
                                "description": .string(description), "attempt": 1, "created_at": .string(Clock.rfc3339(ms: now - 60_000))]
        if let startedAgoMs { json["started_at"] = .string(Clock.rfc3339(ms: now - startedAgoMs)) }
        if let endedAgoMs {
            json["ended_at"] = .string(Clock.rfc3339(ms: now - endedAgoMs))
            json["duration_ms"] = .number(Double((startedAgoMs ?? endedAgoMs) - endedAgoMs))
        }
        if let waitingFor { json["waiting_for"] = .string(waitingFor) }
        json["progress"] = ["last_tool": JSONValue(tool), "last_message": JSONValue(message)]
        if let cost { json["usage"] = ["cost_usd": .number(cost)] }
        return TopView.Task(json: json)
    }

    /// A task id: bg_, a letter, seven digits.
    static func id(_ letter: String, _ number: Int) -> String {
        let digits = String(number)
        return "bg_" + letter + String(repeating: "0", count: 7 - digits.count) + digits
    }

    static func sample(running: Int = 2, pending: Int = 1, ended: Int = 1) -> TopView {
        var view = TopView()
        view.daemonPid = 4242
        view.knownTasks = running + pending + ended
        view.pools = [StatsReply.Pool(id: "provider:mock", limit: 2, running: 2, waiting: pending)]
        view.running = (0..<running).map { (n: Int) in
            task(id("a", n), status: "running", startedAgoMs: 12_300, message: "looking into the parser and everything around it, at length",
                 tool: "grep", cost: 0.0123)
        }
        view.pending = (0..<pending).map { task(id("b", $0), status: "pending", waitingFor: "slot") }
        view.ended = (0..<ended).map { task(id("c", $0), status: "completed", startedAgoMs: 5000, endedAgoMs: 2000) }
        view.keepSelection()
        return view
    }

    func checkSize(_ lines: [ScreenLine], width: Int, height: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(lines.count == height, sourceLocation: sourceLocation)
        for line in lines {
            #expect(TopScreen.displayWidth(line.text) <= width, "wider than \(width): \(line.text)", sourceLocation: sourceLocation)
        }
    }

    @Test func at80x24EverythingFitsAndTheColumnsShowTheTasks() {
        let view = Self.sample()
        let lines = TopScreen.render(view, nowMs: Self.now, width: 80, height: 24)
        checkSize(lines, width: 80, height: 24)
        let text = lines.map(\.text)
        #expect(text[0].hasPrefix("drover top · daemon pid 4242 · 2 running · 1 pending · 4 tasks"))
        #expect(text[0].hasSuffix(" UTC"))
        #expect(text.contains { $0.hasPrefix("  provider:mock") && $0.contains("2/2") })
        let running = text.first { $0.contains("bg_a0000001") }!
        #expect(running.contains("explore") && running.contains("12.3s") && running.contains("$0.0123") && running.contains("[grep] looking"))
        #expect(running.hasSuffix("…"), "the long message is cut: \(running)")
        #expect(text.contains { $0.contains("bg_b0000000") && $0.contains("slot") })
        #expect(text.contains { $0.contains("bg_c0000000") && $0.contains("completed") && $0.contains("2.0s ago") })
        #expect(lines.last?.style == .footer)
        #expect(lines.last?.text.contains("q quit") == true)
    }

    @Test func widerScreensShowMoreOfTheLastColumnAndStillNoLineIsTooLong() {
        let view = Self.sample()
        for (width, height) in [(80, 24), (100, 30), (132, 43), (200, 60), (40, 12), (20, 5)] {
            checkSize(TopScreen.render(view, nowMs: Self.now, width: width, height: height), width: width, height: height)
        }
        let wide = TopScreen.render(view, nowMs: Self.now, width: 132, height: 43).map(\.text)
        #expect(wide.contains { $0.contains("at length") }, "a 132-column screen has room for the whole message")
    }

    @Test func theSelectedTaskIsMarkedAndMovesWithTheArrows() {
        var view = Self.sample()
        func selectedLine() -> ScreenLine? { TopScreen.render(view, nowMs: Self.now, width: 80, height: 24).first { $0.style == .selected } }
        #expect(selectedLine()?.text.hasPrefix("> bg_a0000000") == true)
        #expect(view.handle(.down) == .redraw)
        #expect(selectedLine()?.text.hasPrefix("> bg_a0000001") == true)
        _ = view.handle(.down)
        _ = view.handle(.down)
        _ = view.handle(.down)
        #expect(selectedLine()?.text.hasPrefix("> bg_c0000000") == true, "the last task stays selected past the end")
        _ = view.handle(.home)
        #expect(view.selectedID == "bg_a0000000")
        #expect(TopScreen.render(view, nowMs: Self.now, width: 80, height: 24).filter { $0.text.hasPrefix(">") }.count == 1)
    }

    @Test func aLongListScrollsToKeepTheSelectionOnTheScreen() {
        var view = Self.sample(running: 40, pending: 30, ended: 10)
        for _ in 0..<35 { _ = view.handle(.down) }
        #expect(view.selectedID == "bg_a0000035")
        let lines = TopScreen.render(view, nowMs: Self.now, width: 80, height: 24)
        checkSize(lines, width: 80, height: 24)
        #expect(lines.contains { $0.style == .selected && $0.text.hasPrefix("> bg_a0000035") })
        // Every section keeps rows: the running tasks do not push the others off.
        #expect(lines.contains { $0.text.contains("bg_b0000000") })
        #expect(lines.contains { $0.text.contains("bg_c0000000") })
        #expect(lines.contains { $0.text.hasPrefix("  RUNNING 40") })
    }

    @Test func cancelAsksFirstAndOnlyYCancels() {
        var view = Self.sample()
        _ = view.handle(.down)
        #expect(view.handle(.character("c")) == .redraw)
        #expect(view.footer == .confirmCancel("bg_a0000001"))
        let question = TopScreen.render(view, nowMs: Self.now, width: 80, height: 24).last!.text
        #expect(question.hasPrefix("Cancel bg_a0000001 (explore, running)?"))
        #expect(view.handle(.character("n")) == .redraw)
        #expect(view.footer == .message("bg_a0000001 kept"))
        _ = view.handle(.character("c"))
        #expect(view.handle(.character("y")) == .cancel("bg_a0000001"))
        // An ended task is not asked about.
        _ = view.handle(.end)
        _ = view.handle(.character("c"))
        #expect(view.footer == .message("bg_c0000000 has already ended (completed)"))
    }

    @Test func enterFollowsTheTranscriptAndEscapeComesBack() {
        var view = Self.sample()
        #expect(view.handle(.enter) == .follow("bg_a0000000"))
        view.transcript = TopView.Transcript(taskID: "bg_a0000000")
        let line = #"{"t":1800000000000,"dir":"in","type":"message","role":"assistant","text":"hello \u001b[31mred"}"#
        view.transcript?.append((0..<50).map { _ in line }.joined(separator: "\n") + "\n")
        view.transcript?.append(#"{"t":1800000000000,"dir":"in","type":"message","role":"assistant","text":"the newest"}"# + "\n")
        let lines = TopScreen.render(view, nowMs: Self.now, width: 80, height: 24)
        checkSize(lines, width: 80, height: 24)
        #expect(lines[0].text == "transcript of bg_a0000000 · explore · running")
        #expect(lines[22].text.hasSuffix("assistant: the newest"), "the newest line is last: \(lines[22].text)")
        #expect(!lines.contains { $0.text.contains("\u{1B}") }, "an escape from a task never reaches the terminal")
        #expect(view.handle(.character("j")) == .redraw)
        #expect(view.handle(.escape) == .unfollow)
        #expect(view.handle(.character("q")) == .quit)
    }

    @Test func wideCharactersCountTwoColumns() {
        var view = Self.sample(running: 1, pending: 0, ended: 0)
        view.running[0].lastMessage = String(repeating: "検索", count: 60)
        for width in [80, 81, 100] {
            checkSize(TopScreen.render(view, nowMs: Self.now, width: width, height: 24), width: width, height: 24)
        }
        #expect(TopScreen.displayWidth("検索ab") == 6)
    }

    @Test func keysDecodeFromWhatTheTerminalSends() {
        #expect(TopKey.decode(Array("\u{1B}[A\u{1B}[B\u{1B}OA\r\u{1B}".utf8)) == [.up, .down, .up, .enter, .escape])
        #expect(TopKey.decode(Array("\u{1B}[5~\u{1B}[6~\u{1B}[H\u{1B}[4~cq\u{03}".utf8))
            == [.pageUp, .pageDown, .home, .end, .character("c"), .character("q"), .interrupt])
    }
}

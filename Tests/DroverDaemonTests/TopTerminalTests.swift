import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// A tmux server of the test's own (a private socket), with one detached session of a
/// fixed size: what `drover top` draws is read back with capture-pane.
final class TmuxServer {
    let name = "drover-top-test-\(getpid())"
    let folder: String
    private var config: String { folder + "/tmux.conf" }

    init(folder: String) throws {
        self.folder = folder
        // No status line (the pane is the whole window); a pane whose command ended stays,
        // so what it printed last can be read.
        try FileSystem.writeFile(config, Array("set -g status off\nset -g remain-on-exit on\n".utf8))
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> Result {
        let out = folder + "/.tmux-out"
        let err = folder + "/.tmux-err"
        let pid = try spawnChild(["/usr/bin/env", "TERM=xterm-256color", "/usr/bin/tmux", "-L", name, "-f", config] + arguments,
                                 output: .file(out), stderr: err)
        return Result(status: waitForExit(pid), stdout: readText(out), stderr: readText(err))
    }

    func start(session: String, width: Int, height: Int, command: String) throws {
        let result = try run(["new-session", "-d", "-s", session, "-x", String(width), "-y", String(height), command])
        #expect(result.status == 0, "tmux new-session: \(result.stderr)")
    }

    func screen(_ session: String) -> String { (try? run(["capture-pane", "-p", "-t", session]).stdout) ?? "" }

    func format(_ session: String, _ format: String) -> String {
        ((try? run(["display-message", "-p", "-t", session, format]).stdout) ?? "").split(separator: "\n").first.map(String.init) ?? ""
    }

    /// Polls the screen until `condition` holds; the last screen either way.
    func waitForScreen(_ session: String, withinMs ms: Int = 10_000, _ condition: (String) -> Bool) -> (ok: Bool, screen: String) {
        var last = ""
        let ok = eventually(withinMs: ms) {
            last = screen(session)
            return condition(last)
        }
        return (ok, last)
    }

    var serverPid: Int32? { Int32(format("", "#{pid}")) }

    /// Ends the server and every pane's process.
    func kill() {
        let pid = serverPid
        _ = try? run(["kill-server"])
        if let pid { #expect(eventually { !Processes.isAlive(pid) }, "the tmux server \(pid) is still alive") }
    }
}

/// `drover top` in a real terminal (tmux, 80×24): what it shows matches `drover status
/// --json`, its keys act on the daemon, and the terminal comes back however it ends.
@Suite struct TopTerminalTests {
    /// Which section of top's screen each task id is in (RUNNING, PENDING, ENDED), and its line.
    static func sections(_ screen: String) -> [String: (section: String, line: String)] {
        var found: [String: (String, String)] = [:]
        var section = ""
        for line in screen.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            for name in ["RUNNING", "PENDING", "ENDED"] where line.hasPrefix("  \(name) ") { section = name }
            // A task's row: the selection marker or a space, a space, the id (not the footer).
            guard line.hasPrefix("> ") || line.hasPrefix("  ") else { continue }
            let first = line.dropFirst(2).prefix { $0 != " " }
            guard TaskIdentifiers.isTaskID(String(first)) else { continue }
            found[String(first)] = (section, line)
        }
        return found
    }

    /// Every task of `drover status --json` is on the screen in the section of its status,
    /// with its agent (and a pending one with what it waits for).
    static func matchesStatus(_ screen: String, _ d: DaemonFixture) throws -> Bool {
        let shown = sections(screen)
        guard case .array(let tasks) = try JSONParser.parse(try d.ok(["status", "--json"])).value else { return false }
        var running = 0
        var pending = 0
        for case .object(let task) in tasks {
            guard let id = task["id"]?.stringValue, let status = task["status"]?.stringValue, let agent = task["agent"]?.stringValue,
                  case let (section, line)? = shown[id] else { return false }
            let expected = status == "running" ? "RUNNING" : status == "pending" ? "PENDING" : "ENDED"
            if status == "running" { running += 1 }
            if status == "pending" { pending += 1 }
            guard section == expected, line.contains(" \(agent) ") else { return false }
            if let waiting = task["waiting_for"]?.stringValue, !line.contains(waiting) { return false }
            if expected == "ENDED" && !line.contains(status) { return false }
        }
        return screen.hasPrefix("drover top · daemon pid \(d.daemonPid ?? -1) · \(running) running · \(pending) pending · \(tasks.count) tasks")
    }

    @Test func topInTmuxShowsTheDaemonsTasksFollowsCancelsAndGivesTheTerminalBack() throws {
        let d = try DaemonFixture(settings: "\"providerConcurrency\": {\"mock\": 2}, \"stablePolls\": 100000")
        let alpha = try d.launch("@message working on alpha\n@hang", ["--description", "alpha"])
        let beta = try d.launch("@message working on beta\n@hang", ["--description", "beta"])
        let gamma = try d.launch("@message working on gamma\n@hang", ["--description", "gamma"])
        #expect(eventually { (try? d.status(alpha)) == "running" && (try? d.status(beta)) == "running" })
        #expect(try d.status(gamma) == "pending")

        let tmux = try TmuxServer(folder: d.folder)
        defer { tmux.kill() }
        let top = "\(droverExecutable) top --state-dir \(d.state) --config \(d.config)"
        try tmux.start(session: "top", width: 80, height: 24,
                       command: "stty -g > \(d.folder)/stty.before; \(top) 2> \(d.folder)/top.err; echo TOP-EXIT=$? > \(d.folder)/top.exit; stty -g > \(d.folder)/stty.after")

        // What it shows is what status says.
        var seen = tmux.waitForScreen("top") { (try? Self.matchesStatus($0, d)) ?? false }
        #expect(seen.ok, "top does not match drover status --json:\n\(seen.screen)")
        #expect(tmux.format("top", "#{alternate_on}") == "1", "top draws on the alternate screen")
        let lines = seen.screen.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.allSatisfy { $0.count <= 80 })
        #expect(lines.contains { $0.hasPrefix("> \(alpha)") }, "the first task is selected:\n\(seen.screen)")

        // Enter follows the selected task's transcript; Escape goes back.
        try tmux.run(["send-keys", "-t", "top", "Enter"])
        seen = tmux.waitForScreen("top") { $0.hasPrefix("transcript of \(alpha) · explore · running") && $0.contains("assistant: working on alpha") }
        #expect(seen.ok, "Enter did not follow \(alpha)'s transcript:\n\(seen.screen)")
        try tmux.run(["send-keys", "-t", "top", "Escape"])
        seen = tmux.waitForScreen("top") { $0.contains("> \(alpha)") && $0.contains("  RUNNING 2") }
        #expect(seen.ok, "Escape did not go back to the list:\n\(seen.screen)")

        // Down, c and y cancel beta; gamma then gets its slot, redrawn with no key pressed.
        try tmux.run(["send-keys", "-t", "top", "Down", "c"])
        seen = tmux.waitForScreen("top") { $0.contains("Cancel \(beta) (explore, running)? y") }
        #expect(seen.ok, "c did not ask to confirm:\n\(seen.screen)")
        #expect(try d.status(beta) == "running", "nothing is cancelled before y")
        try tmux.run(["send-keys", "-t", "top", "y"])
        #expect(eventually { (try? d.status(beta)) == "cancelled" })
        #expect(eventually { (try? d.status(gamma)) == "running" })
        seen = tmux.waitForScreen("top") { screen in
            let shown = Self.sections(screen)
            return shown[beta]?.section == "ENDED" && shown[beta]?.line.contains("cancelled (user)") == true
                && shown[gamma]?.section == "RUNNING" && screen.contains("\(beta) cancelled")
        }
        #expect(seen.ok, "the cancel and gamma's start are not on the screen:\n\(seen.screen)")
        seen = tmux.waitForScreen("top") { (try? Self.matchesStatus($0, d)) ?? false }
        #expect(seen.ok, "after the cancel, top does not match drover status --json:\n\(seen.screen)")

        // A resize redraws at the new size.
        try tmux.run(["resize-window", "-t", "top", "-x", "100", "-y", "30"])
        seen = tmux.waitForScreen("top") { screen in
            let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
            return lines.count >= 30 && lines[0].count == 100 && lines[0].hasSuffix(" UTC") && lines[29].contains("\(beta) cancelled")
        }
        #expect(seen.ok, "top did not redraw at 100×30:\n\(seen.screen)")

        // q quits: the normal screen is back, and the terminal's settings are as they were.
        try tmux.run(["send-keys", "-t", "top", "q"])
        #expect(eventually(withinMs: 10_000) { readText(d.folder + "/top.exit") == "TOP-EXIT=0\n" }, "q did not end top with status 0")
        seen = tmux.waitForScreen("top") { !$0.contains("RUNNING") }
        #expect(seen.ok, "the alternate screen was not left:\n\(seen.screen)")
        #expect(tmux.format("top", "#{alternate_on}") == "0")
        #expect(eventually { FileSystem.exists(d.folder + "/stty.after") })
        #expect(readText(d.folder + "/stty.before") == readText(d.folder + "/stty.after"), "the terminal's settings were not restored")

        // A daemon that dies: top gives the terminal back, says so and exits 5.
        try tmux.start(session: "top2", width: 80, height: 24, command: "\(top) 2> \(d.folder)/top2.err; echo TOP-EXIT=$? > \(d.folder)/top2.exit")
        seen = tmux.waitForScreen("top2") { (try? Self.matchesStatus($0, d)) ?? false }
        #expect(seen.ok, "the second top does not match drover status --json:\n\(seen.screen)")
        let workers = [alpha, gamma].compactMap { try? d.task($0)["pid"]?.intValue }.map { Int32($0) }
        #expect(workers.count == 2)
        let daemon = try #require(d.daemonPid)
        kill(daemon, SIGKILL)
        #expect(eventually(withinMs: 10_000) { readText(d.folder + "/top2.exit") == "TOP-EXIT=5\n" }, "top did not end with the daemon")
        #expect(readText(d.folder + "/top2.err").hasPrefix("drover top: the daemon stopped"), "top2.err: \(readText(d.folder + "/top2.err"))")
        seen = tmux.waitForScreen("top2") { !$0.contains("RUNNING") }
        #expect(seen.ok, "the alternate screen was not left:\n\(seen.screen)")
        #expect(tmux.format("top2", "#{alternate_on}") == "0")
        #expect(eventually { !Processes.isAlive(daemon) && workers.allSatisfy { !Processes.isAlive($0) } }, "the daemon or its workers survived")
    }

    @Test func withoutATerminalTopRefusesWithAHint() throws {
        let d = try DaemonFixture()
        let result = try d.run(["top"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("drover top: needs a terminal"))
    }
}

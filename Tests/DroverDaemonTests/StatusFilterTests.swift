import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover status --status S --agent A --since D --limit N` (SPEC 15).
@Suite struct StatusFilterTests {
    @Test func filtersAndTheNewestFirstUnderALimit() throws {
        let d = try DaemonFixture()
        let first = try d.launch("@result one")
        let second = try d.launch("@result two", agent: "oracle")
        let hanging = try d.launch("@hang")
        _ = try d.ok(["wait", first, second, "--timeout", "20s"])
        _ = try d.ok(["cancel", hanging])
        func ids(_ arguments: [String]) throws -> [String] {
            let listed = try JSONParser.parse(try d.ok(["status", "--json"] + arguments)).value.arrayValue ?? []
            return listed.compactMap { $0.objectValue?["id"]?.stringValue }
        }
        #expect(try ids([]) == [first, second, hanging], "oldest first without a limit")
        #expect(try ids(["--limit", "2"]) == [hanging, second], "the newest first")
        #expect(try ids(["--status", "completed"]) == [first, second])
        #expect(try ids(["--status", "cancelled", "--status", "error"]) == [hanging])
        #expect(try ids(["--agent", "oracle"]) == [second])
        #expect(try ids(["--agent", "explore", "--status", "completed"]) == [first])
        #expect(try ids(["--since", "1h", "--limit", "1"]) == [hanging])
        #expect(try ids(["--since", "1ms"]).isEmpty, "created seconds ago")
        #expect(try d.ok(["status", "--agent", "librarian"]) == "No background tasks.")
        let bad = try d.run(["status", "--status", "done"])
        #expect(bad.status == 2 && bad.stderr.contains("--status done: expected one of"), "\(bad.stderr)")
        let both = try d.run(["status", first, "--limit", "1"])
        #expect(both.status == 2 && both.stderr.contains("not both"), "\(both.stderr)")
    }

    /// daemon.log: a timestamp and level on every line (SPEC 15).
    @Test func everyDaemonLogLineHasItsTimeAndLevel() throws {
        let d = try DaemonFixture()
        _ = try d.ok(["status"])
        _ = try d.ok(["shutdown"])
        let lines = readText(d.state + "/daemon.log").split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.contains(" info drover: serving \(d.state)") }, "\(lines)")
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
            #expect(parts.count == 3 && Clock.parseRFC3339(parts[0]) != nil && ["info", "warning", "error", "notice"].contains(parts[1]), "\(line)")
        }
    }
}

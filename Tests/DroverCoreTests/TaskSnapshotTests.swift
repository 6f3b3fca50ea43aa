@testable import DroverCore
import DroverWire
import DroverTestSupport
import Testing

@Suite struct TaskSnapshotTests {
    @Test func taskJSONRoundTrips() throws {
        var snapshot = TaskSnapshot(id: "bg_0123abcd", sessionID: "ses_89abcdef", agent: "explore", provider: "anthropic",
                                    model: "claude-haiku-4-5", key: "anthropic/claude-haiku-4-5", description: "d", prompt: "p\nq",
                                    createdMs: 1_795_312_945_101, ttlMs: 60_000, pool: "provider:anthropic")
        snapshot.status = .error
        snapshot.reason = .exitCode
        snapshot.error = "the worker exited with code 3"
        snapshot.startedMs = 1_795_312_945_150
        snapshot.endedMs = 1_795_312_946_007
        snapshot.pid = 4242
        snapshot.exitCode = 3
        snapshot.progress.messages = 2
        snapshot.progress.toolCalls = 5
        snapshot.progress.lastTool = "grep"
        snapshot.progress.lastUpdateMs = 1_795_312_946_000
        snapshot.slot = 1
        snapshot.extra["request"] = ["agent": "explore", "cwd": "/tmp"]
        let text = JSONWriter.string(.object(snapshot.json()))
        let object = try #require(try JSONParser.parse(text).value.objectValue)
        let back = try #require(TaskSnapshot(json: object))
        #expect(JSONWriter.string(.object(back.json())) == text)
        #expect(back.durationMs == 857)
        #expect(back.createdMs == snapshot.createdMs)
    }

    @Test func timestampsParseBack() {
        for ms: Int64 in [0, 1_795_312_945_101, 1_700_000_000_999] {
            #expect(Clock.parseRFC3339(Clock.rfc3339(ms: ms)) == ms)
        }
        #expect(Clock.parseRFC3339("yesterday") == nil)
    }
}

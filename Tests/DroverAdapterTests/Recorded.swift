import DroverAdapterKit
import DroverCore
import DroverTestSupport
import DroverWire

/// The recorded CLI streams under Fixtures/streams/<cli>/ and the stand-in CLI that replays them.
enum Recorded {
    static let fixtures = FileSystem.dirname(of: #filePath) + "/Fixtures"
    static let standIn = fixtures + "/fake-agent-cli"

    static func lines(_ cli: String, _ name: String) throws -> [JSONObject] {
        try FileSystem.read("\(fixtures)/streams/\(cli)/\(name).jsonl").split(separator: 0x0A).map { line in
            guard let object = try JSONParser.parse(line).value.objectValue else { throw TestFailure("not an object in \(cli)/\(name)") }
            return object
        }
    }

    /// The time the tests' translators read their lines at (unix ms, late December 2025).
    static let nowMs: Int64 = 1_767_036_000_000

    /// Every frame a translator makes of a whole recorded stream, and the translator after it.
    static func translate<T: StreamTranslator>(_ translator: T, _ cli: String, _ name: String) throws -> ([JSONObject], T) {
        var translator = translator
        var frames: [JSONObject] = []
        for line in try lines(cli, name) { frames += translator.translate(line) }
        return (frames, translator)
    }
}

extension StreamTranslator {
    /// A line read at the tests' fixed time.
    mutating func translate(_ line: JSONObject) -> [JSONObject] { translate(line, nowMs: Recorded.nowMs) }
}

extension JSONObject {
    /// A transcript line as the frame it records: without the transcript's own keys.
    var frameOnly: JSONObject {
        var frame = JSONObject()
        for (key, value) in members where !["t", "dir", "attempt"].contains(key) { frame[key] = value }
        return frame
    }
}

extension Array where Element == JSONObject {
    func ofType(_ type: String) -> [JSONObject] { filter { $0["type"]?.stringValue == type } }
}

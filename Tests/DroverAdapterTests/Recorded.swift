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

    /// Every frame a translator makes of a whole recorded stream, and the translator after it.
    static func translate<T: StreamTranslator>(_ translator: T, _ cli: String, _ name: String) throws -> ([JSONObject], T) {
        var translator = translator
        var frames: [JSONObject] = []
        for line in try lines(cli, name) { frames += translator.translate(line) }
        return (frames, translator)
    }
}

extension Array where Element == JSONObject {
    func ofType(_ type: String) -> [JSONObject] { filter { $0["type"]?.stringValue == type } }
}

import DroverCore
import DroverWire

/// A task's row in listings (`status`, and the rows of `cancel` and `wait` answers).
extension TaskRow {
    public var listingJSON: JSONObject {
        var row: JSONObject = [
            "id": .string(id), "session_id": .string(sessionID), "agent": .string(agent),
            "description": .string(description), "status": .string(status.rawValue),
            "waiting_for": JSONValue(waitingFor?.rawValue), "reason": JSONValue(reason?.rawValue),
        ]
        row["duration_ms"] = durationMs.map { .number(Double($0)) } ?? .null
        row["created_at"] = .string(Clock.rfc3339(ms: createdMs))
        return row
    }

    /// The same document, byte for byte as JSONWriter writes `listingJSON`, written straight
    /// as bytes: `status` lists 100,000 ended tasks at times, and building each row as a
    /// JSONObject first, its time as a String, was most of the daemon's share of that answer.
    public func writeListing(into out: inout [UInt8]) {
        out.append(contentsOf: #"{"id":"#.utf8)
        JSONWriter.writeString(id, into: &out)
        out.append(contentsOf: #","session_id":"#.utf8)
        JSONWriter.writeString(sessionID, into: &out)
        out.append(contentsOf: #","agent":"#.utf8)
        JSONWriter.writeString(agent, into: &out)
        out.append(contentsOf: #","description":"#.utf8)
        JSONWriter.writeString(description, into: &out)
        out.append(contentsOf: #","status":"#.utf8)
        JSONWriter.writeString(status.rawValue, into: &out)
        out.append(contentsOf: #","waiting_for":"#.utf8)
        Self.write(waitingFor?.rawValue, into: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        Self.write(reason?.rawValue, into: &out)
        out.append(contentsOf: #","duration_ms":"#.utf8)
        if let durationMs { JSONWriter.writeNumber(Double(durationMs), into: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","created_at":""#.utf8)
        Clock.writeRFC3339(ms: createdMs, into: &out)
        out.append(contentsOf: #""}"#.utf8)
    }

    private static func write(_ text: String?, into out: inout [UInt8]) {
        if let text { JSONWriter.writeString(text, into: &out) } else { out.append(contentsOf: "null".utf8) }
    }
}

import DroverWire

/// Finds the CLI session id to resume in a drover session transcript (the JSON lines that a
/// resumed task's `transcript_path` names): the last `session` frame this adapter sent for
/// this CLI. Lines that are not JSON objects are skipped: the transcript is drover's file,
/// and one torn line must not cost the conversation.
public enum ResumeLookup {
    public static func cliSessionID(transcript: [UInt8], cli: String) -> String? {
        var found: String?
        for line in transcript.split(separator: 0x0A) {
            guard let object = try? JSONParser.parse(line).value.objectValue,
                object["type"]?.stringValue == "session",
                object["dir"]?.stringValue != "out",
                object["cli"]?.stringValue == cli,
                let id = object["cli_session_id"]?.stringValue, !id.isEmpty
            else { continue }
            found = id
        }
        return found
    }

    /// The conversation's cost so far by the CLI's own running count: the last `cli_cost`
    /// frame this adapter sent for this CLI (Claude Code keeps `total_cost_usd` across
    /// `--resume`), or nil when there is none.
    public static func cliTotalCost(transcript: [UInt8], cli: String) -> Double? {
        var found: Double?
        for line in transcript.split(separator: 0x0A) {
            guard let object = try? JSONParser.parse(line).value.objectValue,
                object["type"]?.stringValue == "cli_cost",
                object["dir"]?.stringValue != "out",
                object["cli"]?.stringValue == cli,
                let total = object["total_cost_usd"]?.numberValue, total.isFinite, total >= 0
            else { continue }
            found = total
        }
        return found
    }
}

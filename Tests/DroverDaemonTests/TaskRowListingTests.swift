import DroverCore
import DroverDaemon
import DroverWire
import Testing

/// A listing row written straight as bytes is its JSON document (`listingJSON`), member for
/// member and byte for byte, as the JSON writer writes it.
@Suite struct TaskRowListingTests {
    private func row(_ description: String, status: TaskStatus, waiting: WaitReason? = nil, reason: TaskReason? = nil,
                     durationMs: Int64? = nil, createdMs: Int64) -> TaskRow {
        var snapshot = TaskSnapshot(id: "bg_0123abcd", sessionID: "ses_89ef4567", agent: "explore", provider: "mock", model: nil, key: "explore",
                                    description: description, prompt: "p", createdMs: createdMs, ttlMs: 0, pool: "")
        snapshot.status = status
        snapshot.waitingFor = waiting
        snapshot.reason = reason
        var row = TaskRow(snapshot)
        row.durationMs = durationMs
        return row
    }

    private func expected(_ row: TaskRow) -> [UInt8] {
        var bytes: [UInt8] = []
        JSONWriter.writeObject(row.listingJSON, into: &bytes)
        return bytes
    }

    @Test(arguments: [
        ("plain", TaskStatus.completed, WaitReason?.none, TaskReason?.some(.result), Int64?.some(1000), Int64(1_764_720_000_123)),
        ("quote \" backslash \\ newline \n tab \t bell \u{7} é 漢", .pending, .slot, nil, nil, 0),
        ("", .error, nil, .exit, 0, 999),
        ("end of a year", .cancelled, nil, .user, 86_400_000 * 3, 1_798_761_599_999),
        ("a leap day", .running, nil, nil, 5, 951_782_400_000),
    ])
    func aRowIsWrittenAsItsDocument(description: String, status: TaskStatus, waiting: WaitReason?, reason: TaskReason?,
                                    durationMs: Int64?, createdMs: Int64) throws {
        let row = row(description, status: status, waiting: waiting, reason: reason, durationMs: durationMs, createdMs: createdMs)
        var written: [UInt8] = []
        row.writeListing(into: &written)
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected(row), as: UTF8.self))
        #expect(try JSONParser.parse(written).value.objectValue?["description"]?.stringValue == description)
    }

    @Test func timesAreWrittenAsRFC3339() {
        for ms: Int64 in [0, 1, 59_999, 1_000_000_000_000, 1_764_720_000_123, 4_102_444_800_000, 253_402_300_799_999, 253_402_300_800_000, -1] {
            var bytes: [UInt8] = []
            Clock.writeRFC3339(ms: ms, into: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == Clock.rfc3339(ms: ms), "\(ms)")
        }
    }
}

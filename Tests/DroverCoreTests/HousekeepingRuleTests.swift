@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// The rules of housekeeping (SPEC 15): retention by age on a fake clock, by count, the
/// config that sets them, and the rotation of events.jsonl on real files.
@Suite struct HousekeepingRuleTests {
    /// Tasks ended at 0 s, 1 s and 2 s; `keepEnded` 5 s. The clock is the test's.
    @Test func retentionByAgeOnAFakeClock() {
        let retention = Retention(keepEndedMs: 5000)
        let ended: [(id: String, endedMs: Int64)] = [("bg_000000a2", 2000), ("bg_000000a0", 0), ("bg_000000a1", 1000)]
        var sweep = retention.sweep(ended: ended, protected: [], nowMs: 4999)
        #expect(sweep.remove.isEmpty)
        #expect(sweep.nextDueMs == 5000, "the oldest ages out at its end + keepEnded")
        sweep = retention.sweep(ended: ended, protected: [], nowMs: 5000)
        #expect(sweep.remove == ["bg_000000a0"])
        #expect(sweep.nextDueMs == 6000)
        sweep = retention.sweep(ended: ended, protected: ["bg_000000a1"], nowMs: 6500)
        #expect(sweep.remove == ["bg_000000a0"], "a task something pending depends on stays")
        #expect(sweep.nextDueMs == 7000)
        sweep = retention.sweep(ended: ended, protected: [], nowMs: 60_000)
        #expect(sweep.remove == ["bg_000000a0", "bg_000000a1", "bg_000000a2"])
        #expect(sweep.nextDueMs == nil, "nothing left to age out")
    }

    @Test func retentionByCountKeepsTheNewest() {
        let ended: [(id: String, endedMs: Int64)] = (0..<5).map { ("bg_0000000\($0)", Int64($0) * 10) }
        #expect(Retention(maxEnded: 2).sweep(ended: ended, protected: [], nowMs: 0).remove == ["bg_00000000", "bg_00000001", "bg_00000002"])
        #expect(Retention(maxEnded: 2).sweep(ended: ended, protected: ["bg_00000001"], nowMs: 0).remove == ["bg_00000000", "bg_00000002", "bg_00000003"])
        #expect(Retention(maxEnded: 9).sweep(ended: ended, protected: [], nowMs: 0).remove.isEmpty)
        #expect(Retention().sweep(ended: ended, protected: [], nowMs: 1 << 40).remove.isEmpty, "no retention keeps everything")
    }

    @Test func configReadsRetentionAndRotation() throws {
        let config = try ConfigLoader.parse(Array("""
            {"background_task": {"retention": {"keepEnded": "7d", "maxEnded": 1000}, "maxLogBytes": "1M", "maxLogFiles": 3}}
            """.utf8), file: "c.jsonc")
        #expect(config.retention == Retention(keepEndedMs: 7 * 86_400_000, maxEnded: 1000))
        #expect(config.maxLogBytes == 1 << 20 && config.maxLogFiles == 3)
        let defaults = try ConfigLoader.parse(Array("{}".utf8), file: "c.jsonc")
        #expect(!defaults.retention.isEnabled && defaults.maxLogBytes == 64 << 20 && defaults.maxLogFiles == 5)
        for (text, keyPath, mention) in [
            ("{\"background_task\": {\n\"retention\": {\"keepEnded\": \"soon\"}}}", "background_task.retention.keepEnded", "expected a duration"),
            ("{\"background_task\": {\n\"retention\": {\"maxAge\": 3}}}", "background_task.retention.maxAge", "retention has keepEnded, maxEnded"),
            ("{\"background_task\": {\n\"maxLogBytes\": 100}}", "background_task.maxLogBytes", "at least 1 KiB"),
            ("{\"background_task\": {\n\"maxLogFiles\": 0}}", "background_task.maxLogFiles", "at least 1"),
        ] {
            do {
                _ = try ConfigLoader.parse(Array(text.utf8), file: "c.jsonc")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.keyPath == keyPath && error.line == 2 && error.description.contains(mention), "\(error)")
                #expect(error.description.hasPrefix("c.jsonc:2"), "\(error)")
            }
        }
    }

    /// Journal lines through the real writer thread with a 64 KiB limit: the file rotates to
    /// .1, .2 (keeping 2), no file passes the limit, and the journal reads the rotated files
    /// first, so every task still kept has its lines in order.
    @Test func eventsRotateAndTheJournalReadsAcross() throws {
        ProcessSetup.prepare()
        let root = try temporaryFolder()
        defer { removeTree(root) }
        let loop = EventLoop()
        let store = try ResultStore(loop: loop, root: root, durable: false, rotation: LogRotation(maxBytes: 64 << 10, maxFiles: 2))
        let ids = (0..<2000).map { { (n: Int) -> String in let hex = String(n, radix: 16); return "bg_" + String(repeating: "0", count: 8 - hex.count) + hex }($0) }
        for (n, id) in ids.enumerated() {
            for status in [TaskStatus.pending, .completed] {
                store.appendEvent(TaskEvent(atMs: Int64(n), taskID: id, sessionID: "ses_" + id.dropFirst(3), status: status,
                                            reason: status.isTerminal ? .result : nil, attempt: nil))
            }
            if n % 50 == 49 { store.commit() }
        }
        store.close()
        for file in ["events.jsonl", "events.jsonl.1", "events.jsonl.2"] {
            let size = try FileSystem.read(root + "/" + file).count
            #expect(size > 0 && size <= 64 << 10, "\(file): \(size)")
        }
        #expect(!FileSystem.exists(root + "/events.jsonl.3"))
        let folder = try SafeFolder(root: root)
        #expect(LogRotation.rotatedFiles("events.jsonl", in: folder) == ["events.jsonl.2", "events.jsonl.1"])
        let journal = Journal(folder: folder)
        #expect(journal.unreadableLines == 0)
        #expect(journal.entries[ids.last!]?.ends == 1)
        let kept = ids.filter { journal.entries[$0] != nil }
        #expect(kept.count > 100 && kept.count < ids.count, "the oldest went with the file beyond maxLogFiles")
        #expect(kept == Array(ids.suffix(kept.count)), "what is kept is the newest, without a gap")
    }
}

@testable import DroverCore
import DroverWire
import Glibc
import DroverTestSupport
import Testing

/// SPEC 16.5 with real workers: a worker whose output outpaces the disk waits for it, and
/// input a worker does not read is bounded.
@Suite struct BoundedMemoryTests {
    @Test func aFloodWaitsForTheDiskInsteadOfFillingMemory() throws {
        var config = Harness.testConfig()
        config.maxBufferedBytes = 256 << 10
        let h = try Harness(config: config)
        let flood = try h.submit("@message starting\n@sleep 300ms\n@flood 3000 1000\n@result flooded")
        #expect(eventually(withinMs: 10_000) {
            h.run(forMs: 10)
            return h.supervisor.snapshot(flood)?.progress.messages == 1
        })
        // The disk stops keeping up: nothing is written while the writer is held.
        h.store.holdWriter(true)
        #expect(eventually(withinMs: 10_000) {
            h.run(forMs: 50)
            return h.store.unwrittenBytes(of: flood) > config.maxBufferedBytes
        }, "the flood never passed the bound")
        // Reading stopped once past the bound: it stays there, whatever the worker would write.
        var most = 0
        for _ in 0..<10 {
            h.run(forMs: 50)
            most = max(most, h.store.unwrittenBytes(of: flood))
        }
        // At most one read of 64 KiB past the bound, recorded twice (transcript and session).
        #expect(most <= config.maxBufferedBytes + 2 * (64 << 10) + 4096, "\(most) bytes waited for the disk")
        #expect(h.supervisor.snapshot(flood)?.status == .running)
        #expect(h.supervisor.snapshot(flood)!.progress.messages < 1000, "the worker was not held back")
        // The disk catches up: the flood goes on and ends whole.
        h.store.holdWriter(false)
        let ended = h.run(until: [flood])
        #expect(ended[flood]?.status == .completed && ended[flood]?.progress.messages == 3001)
        #expect(try readLines(h.store.transcriptFile(flood)).filter { $0["type"] == "message" }.count == 3001)
        h.expectNothingLeft(of: flood)
    }

    @Test func inputAWorkerDoesNotReadIsBounded() throws {
        var config = Harness.testConfig()
        config.maxBufferedBytes = 256 << 10
        let h = try Harness(config: config)
        let id = try h.submit("@message not listening\n@no-read")
        #expect(eventually(withinMs: 10_000) {
            h.run(forMs: 20)
            return h.supervisor.snapshot(id)?.progress.messages == 1
        })
        let prompt = String(repeating: "x", count: 100 << 10)
        var outcomes: [PromptDelivery] = []
        for _ in 0..<10 { outcomes.append(h.supervisor.deliverPrompt(id, text: prompt)) }
        let delivered = outcomes.filter { $0 == .delivered }.count
        #expect(delivered >= 2 && delivered < 10, "\(outcomes)")
        guard case .backlogFull(let queued, let limit) = outcomes.last! else {
            Issue.record("past the bound a prompt is refused: \(outcomes)")
            return
        }
        #expect(limit == config.maxBufferedBytes && queued + prompt.utf8.count > limit && queued <= limit)
        h.supervisor.cancel(id)
        #expect(h.run(until: [id])[id]?.reason == .user)
        h.expectNothingLeft(of: id)
    }
}

@testable import DroverCore
import Testing

/// The chunking of removals (`clean`, `retention`): one chunk with the writer at a time,
/// each at most `chunkSize` paths; waiters hear once everything asked before them was tried,
/// with the failures among those removals only.
@Suite struct RemovalQueueTests {
    private func folder(_ n: Int) -> String { "/state/tasks/bg_\(String(n, radix: 16))" }

    @Test func oneBoundedChunkAtATime() {
        var queue = RemovalQueue()
        for n in 0..<150 { queue.add(folder(n)) }
        var heard: [[FileError]] = []
        #expect(queue.whenTried { heard.append($0) })
        let first = queue.takeChunk()
        #expect(first == (0..<RemovalQueue.chunkSize).map(folder))
        #expect(queue.takeChunk() == nil, "the next chunk waits for the writer")
        queue.handedOver(in: 7)
        #expect(queue.progress(attempted: 6, failedBatches: []).isEmpty)
        #expect(queue.takeChunk() == nil)
        #expect(queue.progress(attempted: 7, failedBatches: []).isEmpty, "80 more to go")
        var sequence: UInt64 = 8
        var taken = first!.count
        while let chunk = queue.takeChunk() {
            #expect(chunk.count <= RemovalQueue.chunkSize)
            taken += chunk.count
            queue.handedOver(in: sequence)
            for (action, failures) in queue.progress(attempted: sequence, failedBatches: []) { action(failures) }
            sequence += 1
        }
        #expect(taken == 150)
        #expect(heard.count == 1 && heard[0].isEmpty)
        #expect(queue.isIdle)
        #expect(!queue.whenTried { _ in }, "nothing outstanding")
    }

    @Test func aPathWrittenAgainIsKept() {
        var queue = RemovalQueue()
        for n in 0..<3 { queue.add(folder(n)) }
        queue.keep(folder(1))
        #expect(!queue.isWaiting(folder(1)) && queue.isWaiting(folder(2)))
        #expect(queue.takeChunk() == [folder(0), folder(2)])
    }

    @Test func failuresAreThoseOfTheRemovals() {
        var queue = RemovalQueue()
        queue.add(folder(1))
        queue.add(folder(2))
        var heard: [FileError]?
        _ = queue.whenTried { heard = $0 }
        _ = queue.takeChunk()
        queue.handedOver(in: 3)
        let inside = FileError(path: folder(2) + "/result.md", operation: "remove", code: 13)
        let itself = FileError(path: folder(1), operation: "remove folder", code: 39)
        let other = FileError(path: folder(12) + "/task.json", operation: "write", code: 28)  // another task's write, same round
        for (action, failures) in queue.progress(attempted: 4, failedBatches: [(2...4, [inside, other, itself])]) { action(failures) }
        #expect(heard?.map(\.path) == [inside.path, itself.path])
    }

    @Test func closingHandsOverTheRestWhileAChunkIsOut() {
        var queue = RemovalQueue()
        for n in 0..<100 { queue.add(folder(n)) }
        var heard = false
        _ = queue.whenTried { _ in heard = true }
        _ = queue.takeChunk()
        queue.handedOver(in: 1)
        #expect(queue.takeChunk(all: true)?.count == 100 - RemovalQueue.chunkSize)
        queue.handedOver(in: 2)
        for (action, failures) in queue.progress(attempted: 2, failedBatches: []) { action(failures) }
        #expect(heard && queue.isIdle)
    }
}

// libFuzzer target: arbitrary bytes into the frame decoder, cut into reads at positions the
// input itself chooses. It must return frames or errors, never crash or hang, and so must the
// typed reading of each frame (WorkerFrame).
import DroverWire

@_cdecl("LLVMFuzzerTestOneInput")
public func frameDecoderFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var decoder = FrameDecoder(maxFrameBytes: 1 << 20)
    // The first byte picks the read size, so split and merged reads are both explored.
    let step = max(1, Int(bytes.first ?? 1))
    var offset = 0
    while offset < size {
        let end = min(size, offset + step)
        decoder.append(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[offset..<end]))
        offset = end
        do {
            while let frame = try decoder.next() {
                // Whatever decoded must encode again and decode to the same object.
                var again = FrameDecoder()
                again.append(FrameEncoder.encode(frame.object))
                guard let twin = try again.next(), twin.object == frame.object else { fatalError("frame did not round-trip") }
                // The typed reading of a frame answers a value or an error naming the field.
                _ = try? WorkerFrame.decode(frame)
            }
        } catch {
            return 0
        }
    }
    _ = try? decoder.finish()
    return 0
}

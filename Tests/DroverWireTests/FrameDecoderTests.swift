import DroverWire
import Testing

@Suite struct FrameDecoderTests {
    func frame(_ json: String) -> [UInt8] {
        FrameEncoder.header(length: UInt32(json.utf8.count)) + Array(json.utf8)
    }

    @Test func decodesAFrameFedOneByteAtATime() throws {
        var decoder = FrameDecoder()
        let bytes = frame(#"{"type":"message","text":"héllo"}"#)
        var frames: [Frame] = []
        for byte in bytes {
            decoder.append([byte])
            while let frame = try decoder.next() { frames.append(frame) }
        }
        #expect(frames.count == 1)
        #expect(frames[0].type == "message")
        #expect(frames[0]["text"] == "héllo")
        #expect(decoder.bufferedBytes == 0)
        try decoder.finish()
    }

    @Test func decodesManyFramesFromOneRead() throws {
        var decoder = FrameDecoder()
        var bytes: [UInt8] = []
        for i in 0..<100 { bytes += frame(#"{"type":"progress","n":\#(i)}"#) }
        // A partial frame at the end stays buffered.
        let partial = frame(#"{"type":"result","text":"done"}"#)
        bytes += partial.prefix(7)
        decoder.append(bytes)
        var numbers: [Int] = []
        while let frame = try decoder.next() { numbers.append(frame["n"]?.intValue ?? -1) }
        #expect(numbers == Array(0..<100))
        #expect(decoder.bufferedBytes == 7)
        decoder.append(Array(partial.dropFirst(7)))
        let last = try decoder.next()
        #expect(last?.type == "result")
        #expect(try decoder.next() == nil)
    }

    @Test func keepsThePayloadBytesAsSent() throws {
        var decoder = FrameDecoder()
        let json = #"{ "type" : "log", "text": "a\nb" }"#
        decoder.append(frame(json))
        let decoded = try #require(try decoder.next())
        #expect(decoded.payload == Array(json.utf8))
    }

    @Test func rejectsALengthOfZero() {
        var decoder = FrameDecoder()
        decoder.append(frame(#"{"type":"heartbeat"}"#) + [0, 0, 0, 0])
        #expect(throws: Never.self) { _ = try decoder.next() }
        #expect(throws: FrameError.emptyFrame(offset: 24)) { _ = try decoder.next() }
    }

    @Test func rejectsAnOversizedHeaderWithoutWaitingForThePayload() {
        var decoder = FrameDecoder(maxFrameBytes: 1024)
        decoder.append(FrameEncoder.header(length: 0x8000_0000))
        #expect(throws: FrameError.tooLarge(length: 0x8000_0000, limit: 1024, offset: 0)) { _ = try decoder.next() }
        var small = FrameDecoder(maxFrameBytes: 1024)
        small.append(FrameEncoder.header(length: 1025))
        #expect(throws: FrameError.tooLarge(length: 1025, limit: 1024, offset: 0)) { _ = try small.next() }
    }

    @Test func reportsInvalidJSONWithItsOffset() throws {
        var decoder = FrameDecoder()
        decoder.append(frame(#"{"type":"x"}"#) + frame("this is garbage!"))
        _ = try decoder.next()
        do {
            _ = try decoder.next()
            Issue.record("garbage was accepted")
        } catch {
            guard case .invalidJSON(let offset, let detail) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(offset == 16)
            #expect(detail.offset == 0)
            #expect(error.description.contains("frame at byte 16"))
        }
    }

    @Test func rejectsBadUTF8() {
        var decoder = FrameDecoder()
        let payload: [UInt8] = Array(#"{"type":"#.utf8) + [0x22, 0xFF, 0xFE, 0x22, 0x7D]
        decoder.append(FrameEncoder.header(length: UInt32(payload.count)) + payload)
        #expect {
            _ = try decoder.next()
        } throws: { error in
            guard case FrameError.invalidJSON(_, let detail) = error else { return false }
            return detail.reason.contains("UTF-8")
        }
    }

    @Test func rejectsAFrameThatIsNotAnObject() {
        var decoder = FrameDecoder()
        decoder.append(frame("[1,2]"))
        #expect(throws: FrameError.notAnObject(offset: 0, found: "an array")) { _ = try decoder.next() }
    }

    @Test func rejectsAFrameWithoutAStringType() {
        var decoder = FrameDecoder()
        decoder.append(frame(#"{"text":"no type"}"#))
        #expect(throws: FrameError.missingType(offset: 0)) { _ = try decoder.next() }
        var numeric = FrameDecoder()
        numeric.append(frame(#"{"type":7}"#))
        #expect(throws: FrameError.missingType(offset: 0)) { _ = try numeric.next() }
    }

    @Test func finishReportsAFrameCutOff() throws {
        var decoder = FrameDecoder()
        let bytes = frame(#"{"type":"message","text":"cut"}"#)
        decoder.append(Array(bytes.prefix(10)))
        #expect(try decoder.next() == nil)
        #expect(throws: FrameError.truncated(offset: 0, have: 10, need: bytes.count)) { try decoder.finish() }
        var headerOnly = FrameDecoder()
        headerOnly.append([0, 0])
        #expect(throws: FrameError.truncated(offset: 0, have: 2, need: 4)) { try headerOnly.finish() }
    }

    @Test func encoderRoundTrips() throws {
        let object: JSONObject = ["type": "start", "prompt": "line one\nline \"two\"\t\u{1}", "n": 3, "ok": true, "nothing": nil]
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(object))
        let decoded = try #require(try decoder.next())
        #expect(decoded.object == object)
    }

    @Test func largeFramesAcrossManyReads() throws {
        var decoder = FrameDecoder()
        let text = String(repeating: "x", count: 1 << 20)
        let bytes = FrameEncoder.encode(["type": "message", "text": .string(text)])
        var offset = 0
        var got: Frame?
        while offset < bytes.count {
            let end = min(bytes.count, offset + 65536)
            decoder.append(Array(bytes[offset..<end]))
            offset = end
            if let frame = try decoder.next() { got = frame }
        }
        #expect(got?["text"]?.stringValue?.count == 1 << 20)
    }
}

/// One decoded frame: a JSON object with a string `type`, and the payload bytes it came from
/// (kept so the transcript can record the frame exactly as the worker sent it).
public struct Frame: Sendable {
    public let type: String
    public let object: JSONObject
    public let payload: [UInt8]

    public init(type: String, object: JSONObject, payload: [UInt8]) {
        self.type = type
        self.object = object
        self.payload = payload
    }

    public subscript(key: String) -> JSONValue? { object[key] }
}

/// Why a byte stream is not a valid frame sequence. Offsets count bytes from the start of
/// the stream, so a message can point at the exact spot.
public enum FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptyFrame(offset: Int)
    case tooLarge(length: UInt32, limit: Int, offset: Int)
    case invalidJSON(offset: Int, detail: JSONParseError)
    case notAnObject(offset: Int, found: String)
    case missingType(offset: Int)
    case truncated(offset: Int, have: Int, need: Int)

    public var description: String {
        switch self {
        case .emptyFrame(let offset):
            return "frame at byte \(offset) has length 0"
        case .tooLarge(let length, let limit, let offset):
            return "frame at byte \(offset) declares \(length) bytes, over the limit of \(limit) (maxFrameBytes)"
        case .invalidJSON(let offset, let detail):
            return "frame at byte \(offset) is not valid JSON: \(detail.reason) at payload byte \(detail.offset) (stream byte \(offset + 4 + detail.offset))"
        case .notAnObject(let offset, let found):
            return "frame at byte \(offset) is \(found), not a JSON object"
        case .missingType(let offset):
            return "frame at byte \(offset) has no string field \"type\""
        case .truncated(let offset, let have, let need):
            return "stream ended inside the frame at byte \(offset): \(have) of \(need) bytes"
        }
    }
}

/// Incremental decoder for length-prefixed JSON frames: a 4-byte big-endian length N, then
/// N bytes of UTF-8 JSON. Feed it whatever a read returned (part of a frame, or many), then
/// take frames until it says it needs more. It holds no I/O and no callbacks.
public struct FrameDecoder: Sendable {
    public static let defaultMaxFrameBytes = 16 * 1024 * 1024

    public let maxFrameBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    /// Stream offset of `buffer[start]`.
    public private(set) var consumedBytes = 0

    public init(maxFrameBytes: Int = FrameDecoder.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedBytes: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// The next complete frame, nil when more bytes are needed, or the error that makes the
    /// stream unusable. An oversized header is rejected as soon as its 4 bytes are in, without
    /// waiting for (or buffering) its payload.
    public mutating func next() throws(FrameError) -> Frame? {
        let available = buffer.count - start
        guard available >= 4 else { return nil }
        let frameOffset = consumedBytes
        let length = buffer.withUnsafeBufferPointer { b in
            UInt32(b[start]) << 24 | UInt32(b[start + 1]) << 16 | UInt32(b[start + 2]) << 8 | UInt32(b[start + 3])
        }
        if length == 0 { throw .emptyFrame(offset: frameOffset) }
        if Int(length) > maxFrameBytes { throw .tooLarge(length: length, limit: maxFrameBytes, offset: frameOffset) }
        let total = 4 + Int(length)
        guard available >= total else { return nil }
        let payloadStart = start + 4
        let payloadEnd = start + total
        start += total
        consumedBytes += total
        let parsed: JSONValue
        do {
            parsed = try buffer.withUnsafeBufferPointer { (b) throws(JSONParseError) -> JSONValue in
                try JSONParser.parse(buffer: UnsafeBufferPointer(rebasing: b[payloadStart..<payloadEnd]))
            }
        } catch {
            throw .invalidJSON(offset: frameOffset, detail: error)
        }
        guard case .object(let object) = parsed else { throw .notAnObject(offset: frameOffset, found: parsed.typeName) }
        guard let type = object["type"]?.stringValue else { throw .missingType(offset: frameOffset) }
        return Frame(type: type, object: object, payload: Array(buffer[payloadStart..<payloadEnd]))
    }

    /// Call at end of stream: an error if a frame was cut off.
    public func finish() throws(FrameError) {
        let available = buffer.count - start
        guard available > 0 else { return }
        var need = 4
        if available >= 4 {
            need = 4 + Int(UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16 | UInt32(buffer[start + 2]) << 8 | UInt32(buffer[start + 3]))
        }
        throw .truncated(offset: consumedBytes, have: available, need: need)
    }

    private mutating func compactIfWorthIt() {
        if start > 0 && (start == buffer.count || start >= 64 * 1024 && start * 2 >= buffer.count) {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

/// Builds frames: header plus compact JSON.
public enum FrameEncoder {
    public static func encode(_ object: JSONObject) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0, 0]
        JSONWriter.writeObject(object, into: &out)
        let length = UInt32(out.count - 4)
        out[0] = UInt8(length >> 24)
        out[1] = UInt8((length >> 16) & 0xFF)
        out[2] = UInt8((length >> 8) & 0xFF)
        out[3] = UInt8(length & 0xFF)
        return out
    }

    public static func header(length: UInt32) -> [UInt8] {
        [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)]
    }
}

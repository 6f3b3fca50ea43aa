// libFuzzer target: arbitrary bytes into the JSON parser. It must return a value or an error,
// never crash or hang, and whatever it parses must survive a trip through the writer: the
// compact text parses again to an equal value. The config dialect (JSONC, with line
// records) must read every plain document the same way.
import DroverWire

@_cdecl("LLVMFuzzerTestOneInput")
public func jsonParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let value = try? JSONParser.parse(buffer: bytes) else {
        _ = try? JSONParser.parse(bytes, options: .init(jsonc: true, recordLines: true))
        return 0
    }
    let text = JSONWriter.bytes(value)
    guard let again = try? JSONParser.parse(text).value else { fatalError("the writer's text does not parse") }
    guard again == value else { fatalError("the value changed on a round trip") }
    guard let jsonc = try? JSONParser.parse(bytes, options: .init(jsonc: true, recordLines: true)).value, jsonc == value else {
        fatalError("JSONC reads a plain document differently")
    }
    return 0
}

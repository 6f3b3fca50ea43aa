@testable import DroverWire
import Testing

@Suite struct JSONTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#"{"a":[1,-2.5,3e2],"b":{"c":null,"d":true,"e":false},"s":"x\u00e9\ud83d\ude00\n"}"#).value
        #expect(value == ["a": [1, -2.5, 300], "b": ["c": nil, "d": true, "e": false], "s": "xé😀\n"])
    }

    @Test func writesCompactJSONThatParsesBack() throws {
        let value: JSONValue = ["text": "quote \" backslash \\ newline \n control \u{7}", "n": 12, "f": 0.5, "list": [true, nil]]
        let text = JSONWriter.string(value)
        #expect(!text.contains("\n"))
        #expect(try JSONParser.parse(text).value == value)
    }

    @Test func jsoncTakesCommentsAndTrailingCommas() throws {
        let text = """
            {
              // a comment
              "a": [1, 2,], /* block */
              "b": { "c": "d", },
            }
            """
        let parsed = try JSONParser.parse(text, options: .init(jsonc: true, recordLines: true))
        #expect(parsed.value == ["a": [1, 2], "b": ["c": "d"]])
        #expect(parsed.lines["a"] == 3)
        #expect(parsed.lines["b.c"] == 4)
        // Plain JSON refuses both.
        #expect(throws: JSONParseError.self) { _ = try JSONParser.parse(text) }
    }

    @Test func errorsNameLineAndColumn() {
        do {
            _ = try JSONParser.parse("{\n  \"a\": tru\n}")
            Issue.record("accepted bad JSON")
        } catch {
            #expect(error.line == 2)
            #expect(error.column == 8)
        }
    }

    @Test func rejectsWhatJSONForbids() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\\ud800\"", "{} {}", "\"a\u{1}\"", "nul"] {
            #expect(throws: JSONParseError.self, "accepted \(bad)") { _ = try JSONParser.parse(bad) }
        }
    }

    @Test func refusesNumbersPastDoublesRange() throws {
        for huge in ["1e999", "-1e400", "[0, 17976931348623159" + String(repeating: "0", count: 292) + "]"] {
            #expect(throws: JSONParseError.self, "accepted \(huge)") { _ = try JSONParser.parse(huge) }
        }
        #expect(try JSONParser.parse("1e-400").value == 0)  // underflow is just zero
        #expect(try JSONParser.parse("1.7976931348623157e308").value == .number(.greatestFiniteMagnitude))
    }

    @Test func refusesDeepNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { _ = try JSONParser.parse(deep) }
    }

    @Test func durations() {
        #expect(DurationText.milliseconds("1500ms") == 1500)
        #expect(DurationText.milliseconds("90s") == 90_000)
        #expect(DurationText.milliseconds("30m") == 1_800_000)
        #expect(DurationText.milliseconds("2h") == 7_200_000)
        #expect(DurationText.milliseconds("1.5s") == 1500)
        #expect(DurationText.milliseconds("250") == 250)
        #expect(DurationText.milliseconds(.number(42)) == 42)
        #expect(DurationText.milliseconds("soon") == nil)
        #expect(DurationText.milliseconds("-1s") == nil)
        #expect(DurationText.milliseconds(.bool(true)) == nil)
    }

    /// One frame of about 10 MB holding a million small keys (and one repeated): a linear
    /// key search made this quadratic, stalling the loop for minutes.
    @Test func parsesAFrameWithAMillionKeys() throws {
        let count = 1_000_000
        var payload = Array(#"{"type":"flood""#.utf8)
        for n in 0..<count { payload += Array(#","\#(String(n, radix: 16))":\#(n)"#.utf8) }
        payload += Array(#","5":"again"}"#.utf8)
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.header(length: UInt32(payload.count)) + payload)
        let object = try #require(try decoder.next()).object
        #expect(object.count == count + 1)
        #expect(object.keys[0] == "type" && object.keys[1] == "0" && object.keys[count] == String(count - 1, radix: 16))
        #expect(object.keys[6] == "5" && object["5"] == "again")  // first place, last value
        #expect(object["0"] == 0 && object["ffff"] == 65535 && object[String(count - 1, radix: 16)] == .number(Double(count - 1)))
        #expect(object[String(count, radix: 16)] == nil)
        #expect(object.members.dropFirst().allSatisfy { key, value in key == "5" || value.intValue == Int(key, radix: 16) })
    }

    @Test func aLargeObjectKeepsOrderThroughReplacementsAndRemovals() throws {
        // A model (an array of pairs) and the object go through the same changes, crossing the
        // size where the index starts and stops, with repeated and removed keys.
        var object = JSONObject()
        var model: [(String, JSONValue)] = []
        var crossings = 0  // times the count crossed the size where the index starts or stops
        var seed: UInt64 = 42
        func random(_ bound: Int) -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int((seed >> 33) % UInt64(bound))
        }
        for step in 0..<3000 {
            // Grow past the index's size, shrink below it, then hover around it.
            let key = "k\(random(step < 2000 ? 60 : 25))"
            let removes = step >= 1000 && step < 2000 ? random(4) != 0 : random(3) == 0
            let value: JSONValue? = removes ? nil : .number(Double(step))
            let wasLarge = object.count >= JSONObject.indexedFrom
            object[key] = value
            if (object.count >= JSONObject.indexedFrom) != wasLarge { crossings += 1 }
            if let at = model.firstIndex(where: { $0.0 == key }) {
                if let value { model[at].1 = value } else { model.remove(at: at) }
            } else if let value {
                model.append((key, value))
            }
            #expect(object.keys == model.map(\.0), "step \(step)")
            for n in 0..<60 where object["k\(n)"] != model.first(where: { $0.0 == "k\(n)" })?.1 {
                Issue.record("step \(step): k\(n) is \(String(describing: object["k\(n)"]))")
            }
        }
        #expect(crossings >= 4, "crossed \(crossings) times")

        // Equal members are equal objects, however they were built; order counts.
        var large = JSONObject()
        for n in 0..<40 { large["k\(n)"] = .number(Double(n)) }
        for n in 3..<40 { large["k\(n)"] = nil }
        #expect(large == ["k0": 0, "k1": 1, "k2": 2])
        #expect(large != ["k1": 1, "k0": 0, "k2": 2])
        large["k0"] = nil
        large["k0"] = 0
        #expect(large.keys == ["k1", "k2", "k0"])

        // The parser's duplicates in a large object: first place, last value.
        let text = "{" + (0..<40).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + #","k3":"last","k39":null}"#
        let parsed = try #require(try JSONParser.parse(text).value.objectValue)
        #expect(parsed.count == 40 && parsed.keys[3] == "k3" && parsed["k3"] == "last" && parsed["k39"] == .null)
    }
}

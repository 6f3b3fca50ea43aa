import DroverWire
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
}

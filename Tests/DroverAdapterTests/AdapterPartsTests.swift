import DroverAdapterKit
import DroverWire
import Testing

@Suite struct LineSplitterTests {
    @Test func linesAcrossChunksAndCRLF() throws {
        var splitter = LineSplitter()
        #expect(try splitter.append(Array("{\"a\":1}\n{\"b\"".utf8)) == [Array("{\"a\":1}".utf8)])
        #expect(try splitter.append(Array(":2}\r\n\n{\"c\"".utf8)) == [Array("{\"b\":2}".utf8), []])
        #expect(splitter.finish() == Array("{\"c\"".utf8))
        #expect(splitter.finish() == nil)
    }

    @Test func aLineOverTheLimitIsAnError() {
        var splitter = LineSplitter(maxLineBytes: 8)
        #expect(throws: LineSplitter.Overflow(limit: 8)) { try splitter.append(Array("0123456789".utf8)) }
    }

    @Test func quotingCutsLongLinesAndKeepsOneLine() {
        let line = Array(("{\"text\":\"" + String(repeating: "x", count: 300) + "\tend").utf8)
        let text = quoted(line)
        #expect(text.hasPrefix("`{\"text\":\"xxx"))
        #expect(text.hasSuffix("` (the first 200 of its \(line.count) bytes)"))
        #expect(quoted(Array("a\tb\u{1}".utf8)) == "`a\\tb\\u{1}`")
    }
}

@Suite struct ResumeLookupTests {
    @Test func theLastSessionFrameOfThisCLIWins() {
        let transcript = """
            {"t":1,"dir":"out","type":"start","prompt":"x"}
            {"t":2,"dir":"in","type":"session","cli":"claude","cli_session_id":"first"}
            not json at all
            {"t":3,"dir":"in","type":"session","cli":"codex","cli_session_id":"other-cli"}
            {"t":4,"dir":"in","type":"session","cli":"claude","cli_session_id":"second"}
            {"t":5,"dir":"in","type":"result","text":"done"}

            """
        #expect(ResumeLookup.cliSessionID(transcript: Array(transcript.utf8), cli: "claude") == "second")
        #expect(ResumeLookup.cliSessionID(transcript: Array(transcript.utf8), cli: "codex") == "other-cli")
        #expect(ResumeLookup.cliSessionID(transcript: Array(transcript.utf8), cli: "opencode") == nil)
    }
}

@Suite struct InvocationTests {
    @Test func eachCLIGetsItsStreamFlagsModelAndResume() {
        let claude = CLIKind.claude.invocation(prompt: "-p looks like a flag", model: "claude-opus-4-5", resumeSessionID: "abc", extra: ["--permission-mode", "acceptEdits"])
        #expect(claude.arguments == ["-p", "--output-format", "stream-json", "--verbose", "--model", "claude-opus-4-5", "--resume=abc", "--permission-mode", "acceptEdits"])
        #expect(claude.stdinText == "-p looks like a flag", "the prompt goes to stdin, never mistaken for a flag")
        let opencode = CLIKind.opencode.invocation(prompt: "two words", model: "anthropic/claude-sonnet-4-5", resumeSessionID: "ses_1", extra: [])
        #expect(opencode.arguments == ["run", "--format", "json", "--model", "anthropic/claude-sonnet-4-5", "--session", "ses_1"])
        #expect(opencode.stdinText == "two words")
        let codex = CLIKind.codex.invocation(prompt: "fix it", model: "", resumeSessionID: "0199", extra: ["--skip-git-repo-check"])
        #expect(codex.arguments == ["exec", "--json", "--skip-git-repo-check", "resume", "0199", "--", "fix it"], "an empty model is the CLI's default")
        #expect(codex.stdinText == nil)
        #expect(CLIKind.codex.invocation(prompt: "go", model: nil, resumeSessionID: nil, extra: []).arguments == ["exec", "--json", "--", "go"])
        // Past what exec allows in one argument, the prompt goes to stdin.
        let long = String(repeating: "a", count: CLIKind.longestArgumentPrompt + 1)
        let longTurn = CLIKind.codex.invocation(prompt: long, model: nil, resumeSessionID: "0199", extra: [])
        #expect(longTurn.arguments == ["exec", "--json", "resume", "0199", "--", "-"])
        #expect(longTurn.stdinText == long)
    }

    @Test func optionsParse() throws {
        let options = try AdapterOptions.parse(["codex", "--program", "/opt/codex", "--heartbeat", "250ms", "--grace", "2s", "--", "--sandbox", "read-only"])
        #expect(options.kind == .codex)
        #expect(options.program == "/opt/codex")
        #expect(options.heartbeatMs == 250)
        #expect(options.graceMs == 2000)
        #expect(options.extraArguments == ["--sandbox", "read-only"])
        #expect(try AdapterOptions.parse(["claude"]).program == "claude")
        #expect(throws: AdapterOptions.UsageError.self) { try AdapterOptions.parse(["gemini"]) }
        #expect(throws: AdapterOptions.UsageError.self) { try AdapterOptions.parse(["claude", "--heartbeat", "soon"]) }
        #expect(throws: AdapterOptions.UsageError.self) { try AdapterOptions.parse(["claude", "--model", "x"]) }
        #expect(throws: AdapterOptions.UsageError.self) { try AdapterOptions.parse([]) }
        #expect(try AdapterOptions.parse(["claude"]).cliRetries == 1)
        #expect(try AdapterOptions.parse(["claude", "--cli-retries", "0"]).cliRetries == 0)
        for (arguments, message) in [
            (["claude", "--cli-retries", "-1"], "--cli-retries: \"-1\" is not a whole number from 0 to 100"),
            (["codex", "--cli-retries", "2"], "--cli-retries is for claude only: codex has no retry count the adapter can set"),
        ] {
            do {
                _ = try AdapterOptions.parse(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                #expect(error.description == message)
            }
        }
    }

    @Test func claudeGetsALowRetryCountUnlessItsEnvironmentSetsOne() {
        let base = ["PATH": "/usr/bin", "HOME": "/home/u"]
        #expect(CLIKind.claude.environment(base, cliRetries: 1) == base.merging(["CLAUDE_CODE_MAX_RETRIES": "1"]) { $1 })
        #expect(CLIKind.claude.environment(base.merging(["CLAUDE_CODE_MAX_RETRIES": "6"]) { $1 }, cliRetries: 1)["CLAUDE_CODE_MAX_RETRIES"] == "6")
        #expect(CLIKind.codex.environment(base, cliRetries: 1) == base)
        #expect(CLIKind.opencode.environment(base, cliRetries: 1) == base)
    }

    @Test func usageAddsUp() {
        let sum = addingUsage(["input": 10, "cache": ["read": 5]], ["input": 2, "cache": ["read": 1, "write": 3]])
        #expect(sum == ["input": 12, "cache": ["read": 6, "write": 3]])
    }
}

@testable import DroverCore
import DroverTestSupport
import Testing

@Suite struct ExampleConfigTests {
    /// The annotated example in etc/ must stay a valid config.
    @Test func theExampleConfigLoads() throws {
        let path = FileSystem.dirname(of: FileSystem.dirname(of: FileSystem.dirname(of: #filePath))) + "/etc/config.example.jsonc"
        let config = try ConfigLoader.load(file: path)
        #expect(config.agents["reviewer"]?.passEnv == ["ANTHROPIC_API_KEY"])
        #expect(config.agents["reviewer"]?.limits.memory == 2 << 30)
        #expect(config.agents["sh"]?.workerProtocol == .raw)
        #expect(config.maxFrameBytes == 16 << 20)
        #expect(config.agents["explore"] != nil)
        #expect(config.agents["claude-edit"]?.command == ["drover-adapter", "claude", "--", "--permission-mode", "acceptEdits"])
        #expect(config.agents["claude-edit"]?.timers.stablePolls == 0)
        #expect(config.agents["codex"]?.command == ["drover-adapter", "codex"])
    }
}

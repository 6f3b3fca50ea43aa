import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover mcp --print-config claude` against the real Claude Code: the entry is the one
/// `claude mcp add --scope project` itself writes for the command it suggests.
@Suite struct ClaudeMcpAddTests {
    @Test func printedEntryIsWhatClaudeMcpAddWrites() throws {
        let claude = try RealCLIs.claude()
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let project = folder + "/project"
        let home = folder + "/home"
        try FileSystem.makeDirectories(project)
        try FileSystem.makeDirectories(home)
        let state = folder + "/my state"
        let printed = try runDrover(["mcp", "--print-config", "claude", "--state-dir", state], in: folder)
        #expect(printed.status == 0, "\(printed.stderr)")
        let ours = try parseObject(printed.stdout)["mcpServers"]?.objectValue?["drover"]?.objectValue

        // The command drover suggests on stderr, run by Claude Code in a project of its own.
        let suggestion = try #require(printed.stderr.split(separator: "\n").first { $0.contains("claude mcp add") })
        let words = try #require(suggestion.firstRange(of: "claude mcp add ")).upperBound
        let arguments = shellWords(String(suggestion[words...]))
        let pid = try spawnChild(["/usr/bin/env", "-C", project, "-i", "HOME=\(home)", "PATH=/usr/bin:/bin", claude, "mcp", "add"] + arguments,
                                 output: .file(folder + "/add.out"), stderr: folder + "/add.err")
        #expect(waitForExit(pid) == 0, "\(readText(folder + "/add.out")) \(readText(folder + "/add.err"))")
        let written = try parseObject(readText(project + "/.mcp.json"))["mcpServers"]?.objectValue?["drover"]?.objectValue
        #expect(written?["type"] == ours?["type"] && written?["command"] == ours?["command"] && written?["args"] == ours?["args"],
                "claude wrote \(String(describing: written)), drover printed \(String(describing: ours))")
        #expect(ours?["args"] == ["mcp", "--state-dir", .string(state)])
    }

    /// Splits what shellLine produced (plain, single-quoted and backslash-escaped) back into words.
    private func shellWords(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        var inWord = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
            } else if quoted {
                if character == "'" { quoted = false } else { current.append(character) }
            } else if character == "'" {
                quoted = true
                inWord = true
            } else if character == "\\" {
                escaped = true
                inWord = true
            } else if character == " " {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}

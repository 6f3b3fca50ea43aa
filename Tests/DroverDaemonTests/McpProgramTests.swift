import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover mcp` is drover-mcp, a program of its own beside drover (the MCP SDK needs
/// Foundation); drover itself loads no Foundation, so every client command starts fast.
@Suite struct McpProgramTests {
    /// Foundation's libraries: what the MCP SDK pulls in. FoundationEssentials is not among
    /// them: swift-argument-parser imports it on Linux (see the README's "Install").
    static let foundationLibraries = [
        "libFoundation.so", "libFoundationNetworking.so", "libFoundationInternationalization.so",
        "libFoundationXML.so", "lib_FoundationICU.so",
    ]

    @Test func droverLoadsNoFoundation() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        // ldd: every library the loader maps, those of drover's libraries included.
        let pid = try spawnChild(["/usr/bin/ldd", droverExecutable], output: .file(folder + "/ldd"), stderr: folder + "/ldd.err")
        #expect(waitForExit(pid) == 0, "ldd failed: \(readText(folder + "/ldd.err"))")
        let libraries = readText(folder + "/ldd").split(separator: "\n").compactMap { line in
            line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
        }
        #expect(libraries.contains("libswiftCore.so"), "not the libraries of a Swift program: \(libraries)")
        for library in Self.foundationLibraries {
            #expect(!libraries.contains(library), "drover loads \(library)")
        }
        // drover-mcp does load Foundation: the check above tells the two apart.
        let serverPid = try spawnChild(["/usr/bin/ldd", FileSystem.executableDirectory() + "/drover-mcp"], output: .file(folder + "/ldd-mcp"), stderr: folder + "/ldd.err")
        #expect(waitForExit(serverPid) == 0)
        #expect(readText(folder + "/ldd-mcp").contains("libFoundation.so"))
    }

    @Test func mcpBecomesDroverMcpInTheSameProcess() throws {
        let d = try DaemonFixture()
        let client = try MCPClient(d)
        let hello = try client.initialize()
        #expect(hello["serverInfo"]?.objectValue?["name"] == "drover")
        // The process the client started is now drover-mcp: drover exec'd it, leaving no
        // process of its own behind.
        #expect(FileSystem.realPath("/proc/\(client.process.pid)/exe") == FileSystem.realPath(FileSystem.executableDirectory() + "/drover-mcp"))
        let children = readText("/proc/\(client.process.pid)/task/\(client.process.pid)/children")
        #expect(children.split(separator: " ").isEmpty, "drover-mcp has children: \(children)")
    }

    @Test func mcpWithoutDroverMcpBesideDroverSaysSo() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let lonely = folder + "/drover"
        try FileSystem.writeFile(lonely, try FileSystem.read(droverExecutable), mode: 0o755)
        let pid = try spawnChild([lonely, "mcp", "--state-dir", folder + "/state"], output: .file(folder + "/out"), stderr: folder + "/err")
        #expect(waitForExit(pid) == 2)
        #expect(readText(folder + "/out").isEmpty)
        #expect(readText(folder + "/err") == "drover mcp: \(folder)/drover-mcp is missing; the MCP server is that program, installed beside drover (scripts/install.sh installs both)\n")
        // Nothing was started or written for it.
        #expect(!FileSystem.exists(folder + "/state"))
    }

    @Test func printConfigNamesDroverMcpBesideThisDrover() throws {
        let d = try DaemonFixture()
        let printed = try parseObject(try d.ok(["mcp", "--print-config", "claude"]))
        let server = printed["mcpServers"]?.objectValue?["drover"]?.objectValue
        #expect(server?["command"]?.stringValue.flatMap(FileSystem.realPath) == FileSystem.realPath(droverExecutable))
        #expect(server?["args"] == ["mcp", "--state-dir", .string(d.state), "--config", .string(d.config)])
    }

    /// Each client's entry, printed by the real program: one document of that client's format
    /// on stdout (TOML through Python's own reader), where it goes on stderr.
    @Test func printConfigForCodexAndOpencodeParsesAsTheirFormats() throws {
        let folder = try temporaryFolder()
        defer { removeTree(folder) }
        let state = folder + "/a \"quoted\" state"
        let expectedArguments: JSONValue = ["mcp", "--state-dir", .string(state)]

        let codex = try runDrover(["mcp", "--print-config", "codex", "--state-dir", state], in: folder)
        #expect(codex.status == 0 && codex.stderr == "drover mcp: this goes in ~/.codex/config.toml\n", "\(codex.stderr)")
        try FileSystem.writeFile(folder + "/config.toml", Array(codex.stdout.utf8))
        let script = "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))"
        let pid = try spawnChild(["/usr/bin/python3", "-c", script, folder + "/config.toml"], output: .file(folder + "/toml.out"), stderr: folder + "/toml.err")
        #expect(waitForExit(pid) == 0, "\(readText(folder + "/toml.err"))")
        let table = try parseObject(readText(folder + "/toml.out"))["mcp_servers"]?.objectValue?["drover"]?.objectValue
        #expect(table?["command"]?.stringValue.flatMap(FileSystem.realPath) == FileSystem.realPath(droverExecutable))
        #expect(table?["args"] == expectedArguments)

        let opencode = try runDrover(["mcp", "--print-config", "opencode", "--state-dir", state], in: folder)
        #expect(opencode.status == 0 && opencode.stderr.contains("opencode.json"), "\(opencode.stderr)")
        let entry = try parseObject(opencode.stdout)["mcp"]?.objectValue?["drover"]?.objectValue
        #expect(entry?["type"] == "local" && entry?["enabled"] == true)
        let command = entry?["command"]?.arrayValue ?? []
        #expect(command.first?.stringValue.flatMap(FileSystem.realPath) == FileSystem.realPath(droverExecutable))
        #expect(JSONValue.array(Array(command.dropFirst())) == expectedArguments)

        // Claude Code's: the .mcp.json document, and on stderr the hooks' command, which
        // prints settings naming the same state folder.
        let claude = try runDrover(["mcp", "--print-config", "claude", "--state-dir", state], in: folder)
        #expect(claude.status == 0)
        #expect(try parseObject(claude.stdout)["mcpServers"]?.objectValue?["drover"]?.objectValue?["args"] == expectedArguments)
        #expect(claude.stderr.contains("claude mcp add --scope project drover -- "), "\(claude.stderr)")
        // Its last stderr line: the hooks, the same as `drover hook claude --print-settings`.
        let hooksLine = String(claude.stderr.split(separator: "\n").last ?? "")
        let hooks = try runDrover(["hook", "claude", "--state-dir", state, "--print-settings"], in: folder)
        #expect(try parseObject(hooksLine) == parseObject(hooks.stdout), "\(claude.stderr)")
        let stop = try parseObject(hooks.stdout)["hooks"]?.objectValue?["Stop"]?.arrayValue?.first?.objectValue?["hooks"]?.arrayValue?.first?.objectValue
        #expect(stop?["command"]?.stringValue?.hasSuffix(" hook claude --state-dir \(shellQuoted(state))") == true, "\(hooks.stdout)")

        let unknown = try runDrover(["mcp", "--print-config", "vim"], in: folder)
        #expect(unknown.status == 2 && unknown.stdout.isEmpty)
        #expect(unknown.stderr.contains("\"vim\" is not a client drover knows (claude, codex, opencode)"), "\(unknown.stderr)")
    }
}

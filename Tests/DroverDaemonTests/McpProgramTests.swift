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
}

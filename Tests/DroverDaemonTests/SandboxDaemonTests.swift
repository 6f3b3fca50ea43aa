import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// `drover launch --sandbox` through the daemon (SPEC 17).
@Suite struct SandboxDaemonTests {
    @Test func aLaunchedSandboxIsInForceAndShown() throws {
        let d = try DaemonFixture()
        let id = try d.launch("@echo-env DROVER_SANDBOX\n@result done", ["--sandbox", "workdir", "--network", "none"])
        let output = try d.ok(["output", id, "--wait", "--timeout", "20s"])
        #expect(output.contains("done"), "\(output)")
        let transcript = readText(d.state + "/tasks/\(id)/transcript.jsonl")
        #expect(transcript.contains(#"\"filesystem\":\"workdir\""#) && transcript.contains(#"\"network\":\"none\""#), "\(transcript)")
        let detail = try d.ok(["status", id])
        #expect(detail.contains("sandbox:      filesystem workdir, network none"), "\(detail)")
        #expect(try d.task(id)["request"]?.objectValue?["sandbox"] == ["filesystem": "workdir", "network": "none"])
        let bad = try d.run(["launch", "--agent", "explore", "--prompt", "x", "--network", "none"])
        #expect(bad.status == 2 && bad.stderr.contains("--network needs --sandbox"), "\(bad.stderr)")
    }
}

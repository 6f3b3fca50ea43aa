@testable import DroverCore
import DroverTestSupport
import DroverWire
import Glibc
import Testing

/// Limits are applied in the child before it runs (through drover-limits), and a task killed
/// by one says which.
@Suite struct ResourceLimitTests {
    @Test func limitsReachTheChild() throws {
        let h = try Harness()
        let id = try h.submit(command: ["/bin/sh", "-c", "ulimit -n; grep -E 'Max (address space|cpu time|processes)' /proc/self/limits"]) {
            $0.limits.openFiles = 64
            $0.limits.processes = 4096
            $0.limits.memory = 1 << 30
            $0.limits.cpuSeconds = 100
        }
        let task = try #require(h.run(until: [id])[id])
        #expect(task.status == .completed, "\(task.error ?? "")")
        let lines = try h.result(id).split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines.first == "64")
        #expect(lines.contains { $0.hasPrefix("Max processes") && $0.contains(" 4096 ") })
        #expect(lines.contains { $0.hasPrefix("Max cpu time") && $0.contains(" 100 ") })
        #expect(lines.contains { $0.hasPrefix("Max address space") && $0.contains(" 1073741824 ") })
    }

    @Test func peakMemoryIsRecordedWhenItExceedsTheSupervisors() throws {
        let h = try Harness()
        // 384 MiB touched page by page, against a shell that does almost nothing.
        let big = try h.submit(command: ["/usr/bin/env", "python3", "-c", "b = bytearray(384 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"])
        let small = try h.submit(command: ["/bin/sh", "-c", ":"])
        let ended = h.run(until: [big, small])
        #expect(ended[big]?.status == .completed, "\(ended[big]?.error ?? "")")
        let bigPeak = try #require(ended[big]?.extra["peak_rss_kib"]?.intValue)
        #expect(bigPeak > 384 * 1024, "peak \(bigPeak) KiB")
        // Below the supervisor's own peak the figure would be the supervisor's: not recorded.
        #expect(ended[small]?.extra["peak_rss_kib"] == nil)
    }

    @Test func aTaskKilledByALimitNamesIt() throws {
        let h = try Harness()
        let spinner = try h.submit(command: ["/bin/sh", "-c", "while :; do :; done"]) { $0.limits.cpuSeconds = 1 }
        let writer = try h.submit(command: ["/bin/sh", "-c", "exec head -c 100000 /dev/zero > big"]) {
            $0.limits.fileSize = 4096
            $0.workdir = .task
        }
        let ended = h.run(until: [spinner, writer])
        #expect(ended[spinner]?.reason == .signal)
        #expect(ended[spinner]?.error?.contains("the cpuSeconds limit of 1 s was reached") == true, "\(ended[spinner]?.error ?? "")")
        #expect(ended[writer]?.reason == .signal)
        #expect(ended[writer]?.error?.contains("the fileSize limit of 4096 bytes was reached") == true, "\(ended[writer]?.error ?? "")")
        h.expectNothingLeft(of: spinner)
    }

    @Test func agentAndManifestLimits() throws {
        var config = Harness.testConfig()
        var agent = AgentConfig(name: "boxed", command: ["/bin/sh", "-c", "ulimit -n"], workerProtocol: .raw, provider: "local")
        agent.limits.openFiles = 100
        config.agents["boxed"] = agent
        let h = try Harness(config: config)
        let fromAgent = try h.submit("", agent: "boxed")
        let overridden = try h.submit("", agent: "boxed") { $0.limits.openFiles = 50 }
        h.run(until: [fromAgent, overridden])
        #expect(try h.result(fromAgent) == "100\n")
        #expect(try h.result(overridden) == "50\n")
        let entries = try Manifest.parse(Array(#"{"command": ["/bin/true"], "limits": {"memory": "512M", "cpuSeconds": 30}}"#.utf8), file: "m", config: config)
        #expect(entries[0].request.limits.memory == 512 << 20 && entries[0].request.limits.cpuSeconds == 30)
        #expect(throws: ManifestError.self) {
            _ = try Manifest.parse(Array(#"{"command": ["/bin/true"], "limits": {"memroy": 1}}"#.utf8), file: "m", config: config)
        }
    }
}

// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "drover",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "drover", targets: ["drover"]),
        .executable(name: "drover-mock-agent", targets: ["drover-mock-agent"]),
        .executable(name: "drover-limits", targets: ["drover-limits"]),
        .executable(name: "drover-warden", targets: ["drover-warden"]),
        .executable(name: "drover-adapter", targets: ["drover-adapter"]),
        .executable(name: "drover-mcp", targets: ["drover-mcp"]),
        .library(name: "DroverCore", targets: ["DroverCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Debian's libuv1-dev, found through pkg-config.
        .systemLibrary(
            name: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        // System calls that need _GNU_SOURCE (posix_spawn with setsid, pipe2, syncfs), kept
        // in C so that define never reaches a header Swift also imports.
        .target(name: "CDroverSystem"),
        // The wire format shared by the supervisor and every Swift worker: JSON values and
        // length-prefixed frames. No Foundation, so workers start fast.
        .target(name: "DroverWire"),
        .target(
            name: "DroverCore",
            dependencies: [
                "CLibUV", "CDroverSystem", "DroverWire",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon (`drover serve`) and its client: a thin layer over the core. Its metrics
        // go through swift-prometheus (no Foundation, like the rest of the client).
        .target(
            name: "DroverDaemon",
            dependencies: [
                "CLibUV", "CDroverSystem", "DroverCore", "DroverWire",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // What drover tells an agent session about the tasks it launched: the ending lines of
        // MCP answers and the Claude Code hook (`drover hook claude`). No Foundation, so the
        // hook starts as fast as every other drover command.
        .target(
            name: "DroverTaskNotices",
            dependencies: ["DroverCore", "DroverDaemon", "DroverWire"]
        ),
        // The MCP tools over stdio, a client of the daemon. The MCP SDK needs Foundation, so
        // the server is a program of its own, drover-mcp, which `drover mcp` execs.
        .target(
            name: "DroverMCP",
            dependencies: [
                "DroverCore", "DroverDaemon", "DroverTaskNotices", "DroverWire",
                .product(name: "MCP", package: "swift-sdk"),
            ]
        ),
        // The start drover and drover-mcp share: signals, logging, usage errors exit 2.
        .target(
            name: "DroverCommandLine",
            dependencies: ["DroverCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "drover-mcp",
            dependencies: [
                "DroverCommandLine", "DroverCore", "DroverDaemon", "DroverMCP", "DroverWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "drover",
            dependencies: [
                "CDroverSystem", "DroverCommandLine", "DroverCore", "DroverDaemon", "DroverTaskNotices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
        ),
        // Applies a task's resource limits, then execs its worker (posix_spawn has no hook
        // between fork and exec).
        .executableTarget(name: "drover-limits", path: "workers/limits"),
        // Kills what a supervisor leaves behind if it dies (SIGKILL included).
        .executableTarget(name: "drover-warden"),
        .executableTarget(
            name: "drover-mock-agent",
            dependencies: ["DroverWire"],
            path: "workers/mock-agent"
        ),
        // --- Agent CLI adapters (issue 4): `drover-adapter claude|opencode|codex` runs an agent
        // CLI as its child and translates its JSON stream into frames. The kit (translators,
        // options, the run) is a library so the tests reach it; the executable is thin.
        .target(
            name: "DroverAdapterKit",
            dependencies: ["CLibUV", "DroverCore", "DroverWire"],
            path: "workers/adapter/Kit"
        ),
        .executableTarget(
            name: "drover-adapter",
            dependencies: ["DroverAdapterKit", "DroverCore"],
            path: "workers/adapter/Main"
        ),
        .testTarget(
            name: "DroverAdapterTests",
            dependencies: ["DroverAdapterKit", "DroverCore", "DroverWire", "DroverTestSupport"],
            exclude: ["Fixtures"]
        ),
        // The real agent CLIs (Claude Code, Codex's app-server; scripts/fetch-agent-clis.sh
        // brings them) driven through drover against fake model APIs on loopback.
        .testTarget(
            name: "DroverRealAgentTests",
            dependencies: ["DroverCore", "DroverWire", "DroverTestSupport"],
            exclude: ["Fakes"]
        ),
        // --- end of agent CLI adapters
        // Figures for BENCHMARKS.md (bench/run.sh builds and runs it in release mode).
        .executableTarget(
            name: "drover-bench",
            dependencies: ["DroverCore"],
            path: "bench/drover-bench"
        ),
        .target(name: "DroverTestSupport", dependencies: ["CDroverSystem", "DroverCore", "DroverWire"], path: "Tests/DroverTestSupport"),
        .testTarget(name: "DroverWireTests", dependencies: ["DroverWire"]),
        .testTarget(name: "DroverCoreTests", dependencies: ["DroverCore", "DroverWire", "DroverTestSupport"]),
        .testTarget(name: "DroverDaemonTests", dependencies: ["DroverDaemon", "DroverCore", "DroverWire", "DroverTestSupport"]),
        // Python workers (issue 4): the example and the model API worker under real drover,
        // against a local fake model server, plus the Python unit tests of workers/python.
        .testTarget(name: "DroverWorkerTests", dependencies: ["DroverCore", "DroverWire", "DroverTestSupport"]),
        // Fault injection (issue 5): each fault injected beside healthy tasks, then the same
        // checks of states, slots, processes, descriptors and files.
        .testTarget(name: "DroverFaultTests", dependencies: ["DroverDaemon", "DroverCore", "DroverWire", "DroverTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

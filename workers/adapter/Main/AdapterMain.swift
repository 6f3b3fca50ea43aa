// drover-adapter: a drover worker that runs an agent CLI (Claude Code, opencode, Codex, Codex's
// app-server) as its own child and translates the CLI's streaming JSON into drover frames.
import DroverAdapterKit
import DroverCore
import Glibc

@main
enum AdapterMain {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--help" || arguments.first == "-h" {
            print(AdapterOptions.usage)
            return
        }
        let options: AdapterOptions
        do {
            options = try AdapterOptions.parse(arguments)
        } catch {
            FileHandleStderr.write("drover-adapter: \(error)\n\(AdapterOptions.usage)\n")
            exit(2)
        }
        ProcessSetup.prepare()
        let loop = EventLoop()
        var code: Int32 = 0
        let finished: (Int32) -> Void = { finished in
            code = finished
            loop.stop()
        }
        // Codex's app-server is a conversation, not a stream: it has a run of its own.
        let run: AnyObject
        if options.kind == .codexAppServer {
            let appServerRun = CodexAppServerRun(loop: loop, options: options, environment: ProcessEnvironment.current())
            appServerRun.onFinished = finished
            appServerRun.begin()
            run = appServerRun
        } else {
            let streamRun = AdapterRun(loop: loop, options: options, environment: ProcessEnvironment.current())
            streamRun.onFinished = finished
            streamRun.begin()
            run = streamRun
        }
        // The run, and with it its signal watchers, lives until the process exits: freed any
        // earlier, the watchers would put SIGTERM's default action back, and the SIGTERM drover
        // sends with its cancel frame could still kill the adapter on its way out.
        withExtendedLifetime(run) {
            loop.run()
            exit(code)
        }
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

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
        if options.kind == .codexAppServer {
            let run = CodexAppServerRun(loop: loop, options: options, environment: ProcessEnvironment.current())
            run.onFinished = finished
            run.begin()
            loop.run()
        } else {
            let run = AdapterRun(loop: loop, options: options, environment: ProcessEnvironment.current())
            run.onFinished = finished
            run.begin()
            loop.run()
        }
        exit(code)
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

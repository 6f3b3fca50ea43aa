import ArgumentParser
import DroverDaemon

/// `drover metrics`: the daemon's metrics in the Prometheus text format, as `drover serve
/// --metrics-listen` serves them at /metrics.
struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "The daemon's metrics in the Prometheus text format: tasks, attempts, pools, usage, latencies, descriptors.",
        discussion: "The same text that `drover serve --metrics-listen 127.0.0.1:PORT` serves at http://127.0.0.1:PORT/metrics.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        let answer = try client.call(MetricsRequest())
        Terminal.write(1, answer.text)
    }
}

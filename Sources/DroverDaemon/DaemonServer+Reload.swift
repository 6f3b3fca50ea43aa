import DroverCore

/// `drover reload` and SIGHUP: the daemon takes another config (or its own file again)
/// without stopping. A config that does not load changes nothing.
extension DaemonServer {
    func reloadConfig(from file: String?) -> Result<DroverConfig, ConfigError> {
        let loaded: DroverConfig
        do {
            loaded = try (file ?? config.source).map { path throws(ConfigError) in try ConfigLoader.load(file: path) } ?? DroverConfig()
        } catch {
            DroverLog.logger.error("reload refused, keeping \(config.source ?? "the built-in defaults"): \(error)")
            return .failure(error)
        }
        for warning in loaded.warnings { DroverLog.logger.warning("\(warning)") }
        config = loaded
        if let hook {
            hook.arguments = loaded.onComplete ?? []
        } else if let arguments = loaded.onComplete {
            hook = CompletionHook(loop: loop, launch: supervisor.launch, arguments: arguments)
        }
        supervisor.reconfigure(loaded)
        DroverLog.logger.info("config reloaded: \(loaded.source ?? "the built-in defaults"); running tasks keep their settings")
        return .success(loaded)
    }
}

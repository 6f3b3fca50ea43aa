// libFuzzer target: arbitrary bytes as a config file (JSONC). Every input must give a config
// or a ConfigError that names the file, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let config = try ConfigLoader.parse(bytes, file: "fuzz.jsonc")
        _ = config.pool(provider: "p", model: "m", key: "k")
    } catch {
        guard error.file == "fuzz.jsonc", !error.description.isEmpty else { fatalError("an error without its file") }
    }
    return 0
}

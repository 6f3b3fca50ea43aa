import DroverWire

/// One task line of a `drover run` manifest.
public struct ManifestEntry: Sendable {
    /// 1-based line number in the file.
    public let line: Int
    public let request: TaskRequest
    /// Identifies the row across runs for `--resume`: a digest of its text plus which
    /// occurrence of that text it is.
    public let identity: String
}

/// A manifest that cannot run: every bad line, with its number.
public struct ManifestError: Error, Sendable, CustomStringConvertible {
    public let file: String
    public let problems: [(line: Int, message: String)]

    public var description: String {
        problems.map { "\(file):\($0.line): \($0.message)" }.joined(separator: "\n")
    }
}

/// JSON lines, one task each (SPEC section 7). Blank lines are skipped.
public enum Manifest {
    static let knownKeys: Set<String> = ["agent", "prompt", "description", "provider", "model", "ttl", "cwd", "workdir", "env", "limits", "command"]

    public static func parse(_ bytes: [UInt8], file: String, config: DroverConfig) throws(ManifestError) -> [ManifestEntry] {
        var entries: [ManifestEntry] = []
        var problems: [(Int, String)] = []
        var occurrences: [UInt64: Int] = [:]
        for (index, lineBytes) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            var text = Array(lineBytes)
            if text.last == 0x0D { text.removeLast() }
            if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            do {
                let request = try parseLine(text, config: config)
                let digest = fnv1a(text)
                occurrences[digest, default: 0] += 1
                let identity = String(digest, radix: 16) + "#" + String(occurrences[digest]!)
                entries.append(ManifestEntry(line: line, request: request, identity: identity))
            } catch {
                problems.append((line, error.text))
                if problems.count >= 20 { break }
            }
        }
        if !problems.isEmpty { throw ManifestError(file: file, problems: problems) }
        return entries
    }

    struct LineError: Error {
        let text: String
    }

    static func parseLine(_ bytes: [UInt8], config: DroverConfig) throws(LineError) -> TaskRequest {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes).value
        } catch {
            throw LineError(text: "not valid JSON: \(error.reason) at column \(error.column)")
        }
        guard case .object(let row) = value else { throw LineError(text: "expected a JSON object, found \(value.typeName)") }
        for key in row.keys where !knownKeys.contains(key) {
            throw LineError(text: "unknown key \"\(key)\" (known: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) throws(LineError) -> String? {
            guard let value = row[key], !value.isNull else { return nil }
            guard case .string(let s) = value else { throw LineError(text: "\"\(key)\" must be a string, found \(value.typeName)") }
            return s
        }
        let prompt = try string("prompt")
        var request: TaskRequest
        if let commandValue = row["command"] {
            guard row["agent"] == nil else { throw LineError(text: "give either \"agent\" or \"command\", not both") }
            guard case .array(let items) = commandValue, !items.isEmpty else {
                throw LineError(text: "\"command\" must be a non-empty array of strings (an argv)")
            }
            var argv: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw LineError(text: "\"command\" must hold only strings, found \(item.typeName)") }
                argv.append(s)
            }
            request = TaskRequest(command: argv, prompt: prompt ?? "")
        } else {
            guard let agent = try string("agent") else { throw LineError(text: "needs \"agent\" (with \"prompt\") or \"command\"") }
            guard config.agents[agent] != nil else {
                throw LineError(text: "unknown agent \"\(agent)\" (known: \(config.agents.keys.sorted().joined(separator: ", ")))")
            }
            guard let prompt else { throw LineError(text: "needs \"prompt\" for agent \"\(agent)\"") }
            request = TaskRequest(agent: agent, prompt: prompt)
        }
        request.description = try string("description")
        request.provider = try string("provider")
        request.model = try string("model")
        request.cwd = try string("cwd")
        if let ttl = row["ttl"] {
            guard let ms = DurationText.milliseconds(ttl) else {
                throw LineError(text: "\"ttl\" must be a duration (milliseconds, or a string such as \"90s\" or \"30m\")")
            }
            request.timers.taskTtl = ms
        }
        if let workdir = try string("workdir") {
            guard workdir == "task" else { throw LineError(text: "\"workdir\" can only be \"task\" (a fresh folder under the task's folder); use \"cwd\" for a folder") }
            request.workdirPerTask = true
        }
        if let limits = row["limits"] {
            do {
                request.limits = try ConfigReader(file: "", lines: [:], lenient: false).readLimits(limits, "limits")
            } catch {
                throw LineError(text: "\(error.keyPath ?? "limits"): \(error.message)")
            }
        }
        if let env = row["env"] {
            guard case .object(let variables) = env else { throw LineError(text: "\"env\" must be an object of strings") }
            for (name, value) in variables.members {
                guard case .string(let s) = value else { throw LineError(text: "\"env\".\"\(name)\" must be a string, found \(value.typeName)") }
                request.env[name] = s
            }
        }
        return request
    }

    /// FNV-1a, 64 bits: a stable digest of a line.
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

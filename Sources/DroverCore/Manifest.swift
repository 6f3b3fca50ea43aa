import DroverWire

/// One task line of a `drover run` manifest.
public struct ManifestEntry: Sendable {
    /// 1-based line number in the file.
    public let line: Int
    /// What the row asks for; its `after` holds row names until the row is submitted.
    public let request: TaskRequest
    /// The row's `name`, for other rows' `after` and `{result:NAME}`.
    public let name: String?
    /// Identifies the row across runs for `--resume`: a digest of its text plus which
    /// occurrence of that text it is.
    public let identity: String

    /// The names of the rows it waits for.
    public var after: [String] { request.after }
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
                let (request, name) = try parseLine(text, config: config)
                let digest = fnv1a(text)
                occurrences[digest, default: 0] += 1
                let identity = String(digest, radix: 16) + "#" + String(occurrences[digest]!)
                entries.append(ManifestEntry(line: line, request: request, name: name, identity: identity))
            } catch {
                problems.append((line, error.text))
                if problems.count >= 20 { break }
            }
        }
        if problems.isEmpty { problems = ManifestGraph.problems(entries) }
        if !problems.isEmpty { throw ManifestError(file: file, problems: problems) }
        return entries
    }

    struct LineError: Error {
        let text: String
    }

    static func parseLine(_ bytes: [UInt8], config: DroverConfig) throws(LineError) -> (TaskRequest, name: String?) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes).value
        } catch {
            throw LineError(text: "not valid JSON: \(error.reason) at column \(error.column)")
        }
        guard case .object(let row) = value else { throw LineError(text: "expected a JSON object, found \(value.typeName)") }
        do throws(FieldError) {
            let request = try TaskRequest.decode(row, from: .manifestLine, agents: Array(config.agents.keys))
            guard let name = row["name"] else { return (request, nil) }
            guard case .string(let text) = name, ManifestNames.isName(text) else {
                throw FieldError(field: "name", ManifestNames.rule(found: name.stringValue ?? name.typeName))
            }
            return (request, text)
        } catch {
            throw LineError(text: error.message)
        }
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

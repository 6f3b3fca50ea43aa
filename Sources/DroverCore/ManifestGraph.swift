/// The names a manifest row may have, and what `after` and `{result:NAME}` may name.
public enum ManifestNames {
    /// Letters, digits, "-", "_" and "."; 1 to 64 of them, starting with a letter or digit.
    public static func isName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 64, isAlphanumeric(first) else { return false }
        return name.unicodeScalars.allSatisfy { isAlphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." }
    }

    static func rule(found name: String) -> String {
        "a row name is 1-64 letters, digits, \"-\", \"_\" or \".\", starting with a letter or digit; found \(FieldReader.describe(.string(name)))"
    }

    private static func isAlphanumeric(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
    }
}

/// The dependencies between a manifest's rows (SPEC 13): names are unique, `after` names
/// rows that exist, `{result:NAME}` names a row in `after`, and there is no cycle. All of it
/// is checked before anything runs; the rows then go in an order where each comes after
/// the rows it waits for.
enum ManifestGraph {
    /// `{result:NAME}` references in a prompt, in order.
    static func resultReferences(in prompt: String) -> [String] {
        var names: [String] = []
        var rest = Substring(prompt)
        while let open = rest.firstRange(of: "{result:") {
            let after = rest[open.upperBound...]
            guard let close = after.firstIndex(of: "}") else { break }
            names.append(String(after[..<close]))
            rest = after[after.index(after: close)...]
        }
        return names
    }

    /// The problems of the rows' graph, by line (empty: it can run).
    static func problems(_ entries: [ManifestEntry]) -> [(line: Int, message: String)] {
        var problems: [(Int, String)] = []
        var lineOfName: [String: Int] = [:]
        for entry in entries {
            guard let name = entry.name else { continue }
            if let first = lineOfName[name] {
                problems.append((entry.line, "the name \"\(name)\" is taken by line \(first)"))
            } else {
                lineOfName[name] = entry.line
            }
        }
        for entry in entries {
            for name in entry.after where lineOfName[name] == nil {
                problems.append((entry.line, "after: no row is named \"\(name)\""))
            }
            for name in resultReferences(in: entry.request.prompt) where !entry.after.contains(name) {
                problems.append((entry.line, "the prompt's {result:\(name)} names a row that is not in \"after\""))
            }
        }
        guard problems.isEmpty else { return problems }
        if let cycle = cycle(entries, lineOfName: lineOfName) {
            let path = cycle.map { "\($0.name) (line \($0.line))" }.joined(separator: " -> ")
            problems.append((cycle[0].line, "a cycle: \(path) -> \(cycle[0].name)"))
        }
        return problems
    }

    /// The rows, each after the rows it waits for, otherwise in file order.
    static func order(_ entries: [ManifestEntry]) -> [ManifestEntry] {
        let byName = Dictionary(entries.compactMap { entry in entry.name.map { ($0, entry) } }, uniquingKeysWith: { first, _ in first })
        var placed: Set<Int> = []
        var ordered: [ManifestEntry] = []
        func place(_ entry: ManifestEntry) {
            guard placed.insert(entry.line).inserted else { return }
            for name in entry.after { if let dependency = byName[name] { place(dependency) } }
            ordered.append(entry)
        }
        entries.forEach(place)
        return ordered
    }

    /// One cycle, as the rows along it, if there is any.
    private static func cycle(_ entries: [ManifestEntry], lineOfName: [String: Int]) -> [(name: String, line: Int)]? {
        let byName = Dictionary(entries.compactMap { entry in entry.name.map { ($0, entry) } }, uniquingKeysWith: { first, _ in first })
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var path: [String] = []
        func visit(_ name: String) -> [String]? {
            switch marks[name] {
            case .done?: return nil
            case .visiting?: return Array(path[path.firstIndex(of: name)!...])
            case nil: break
            }
            marks[name] = .visiting
            path.append(name)
            for next in byName[name]?.after ?? [] {
                if let found = visit(next) { return found }
            }
            path.removeLast()
            marks[name] = .done
            return nil
        }
        for entry in entries {
            guard let name = entry.name, let found = visit(name) else { continue }
            return found.map { ($0, lineOfName[$0] ?? 0) }
        }
        return nil
    }
}

import MCP

/// A tool call's arguments, read with the leniency models need (a number sent as a
/// string, say) and errors that tell the model what to send instead.
struct ToolArguments {
    let values: [String: Value]

    init(_ values: [String: Value]?) {
        self.values = values ?? [:]
    }

    func string(_ name: String) throws(ToolInputError) -> String? {
        guard let value = values[name], !value.isNull else { return nil }
        guard let text = value.stringValue else { throw ToolInputError("\(name) must be a string") }
        let trimmed = text.trimmingWhitespace
        return trimmed.isEmpty ? nil : trimmed
    }

    func bool(_ name: String, default fallback: Bool) throws(ToolInputError) -> Bool {
        guard let value = values[name], !value.isNull else { return fallback }
        if let flag = value.boolValue { return flag }
        switch value.stringValue?.lowercased() {
        case "true": return true
        case "false": return false
        default: throw ToolInputError("\(name) must be true or false")
        }
    }

    /// Task ids: an array of strings, or one string (ids split at commas and spaces).
    func taskIDs(_ name: String) throws(ToolInputError) -> [String] {
        guard let value = values[name], !value.isNull else { return [] }
        var ids: [String] = []
        if let text = value.stringValue {
            ids = text.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init)
        } else if let items = value.arrayValue {
            for item in items {
                guard let text = item.stringValue else { throw ToolInputError("\(name) must be an array of task ids (bg_...)") }
                ids.append(text.trimmingWhitespace)
            }
        } else {
            throw ToolInputError("\(name) must be an array of task ids (bg_...)")
        }
        return ids
    }

    /// A whole number within `range`, or nil when absent.
    func integer(_ name: String, in range: ClosedRange<Int>) throws(ToolInputError) -> Int? {
        guard let value = values[name], !value.isNull else { return nil }
        let number: Double? = value.intValue.map(Double.init) ?? value.doubleValue ?? value.stringValue.flatMap { Double($0.trimmingWhitespace) }
        guard let number, number.isFinite, number == number.rounded(), number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            throw ToolInputError("\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return Int(number)
    }

    /// A whole number of milliseconds within `range`.
    func milliseconds(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws(ToolInputError) -> Int {
        guard let value = values[name], !value.isNull else { return fallback }
        let number: Double? = value.intValue.map(Double.init) ?? value.doubleValue ?? value.stringValue.flatMap { Double($0.trimmingWhitespace) }
        guard let number, number.isFinite else { throw ToolInputError("\(name) must be a number of milliseconds") }
        guard number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            throw ToolInputError("\(name) must be between \(range.lowerBound) and \(range.upperBound) ms (\(range.upperBound / 60_000) minutes); got \(Self.format(number)). To wait longer, call again after it returns")
        }
        return Int(number)
    }

    private static func format(_ number: Double) -> String {
        number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }
}

/// Bad tool input, phrased for the model that sent it.
struct ToolInputError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension Value {
    var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension String {
    var trimmingWhitespace: String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}

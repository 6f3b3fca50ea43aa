import DroverWire

/// A member of a request that is wrong: which one, and what is wrong with it.
public struct FieldError: Error, Sendable, CustomStringConvertible {
    /// The key or key path as the sender wrote it (`env.A=B`); nil for the object as a whole.
    public let field: String?
    /// A sentence that names the field, such as `"ids" must be an array of task ids, found a string`.
    public let message: String

    public init(field: String?, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { message }
}

/// Reads the members of one JSON object strictly: each value must have the type and range
/// its key asks for, and (when `known` is given) every key must be known. A null member
/// counts as absent. Errors name the field, and what was found: its value when only the
/// range is wrong, its type when the type is.
public struct FieldReader {
    public let object: JSONObject

    /// A reader that refuses unknown keys, naming the known ones.
    public init(_ object: JSONObject, known: [String]) throws(FieldError) {
        for key in object.keys where !known.contains(key) {
            throw FieldError(field: key, "unknown key \"\(key)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        self.object = object
    }

    /// A reader that leaves unknown keys alone (answers may grow new members).
    public init(lenient object: JSONObject) {
        self.object = object
    }

    public func value(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    public func string(_ key: String) throws(FieldError) -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else { throw mismatch(key, "a string", value) }
        return text
    }

    /// A string that reaches argv, the environment or a path, where a NUL byte would end it early.
    public func cString(_ key: String) throws(FieldError) -> String? {
        guard let text = try string(key) else { return nil }
        if text.utf8.contains(0) { throw FieldError(field: key, "\"\(key)\" must not contain a NUL byte") }
        return text
    }

    public func bool(_ key: String) throws(FieldError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw mismatch(key, "true or false", value) }
        return flag
    }

    /// A whole number of 0 or more.
    public func count(_ key: String, of what: String = "") throws(FieldError) -> Int? {
        guard let value = value(key) else { return nil }
        guard let n = value.intValue, n >= 0 else {
            throw mismatch(key, "a whole number\(what.isEmpty ? "" : " of " + what) of 0 or more", value, sameType: value.numberValue != nil)
        }
        return n
    }

    /// A whole number of milliseconds of 0 or more.
    public func milliseconds(_ key: String) throws(FieldError) -> Int? {
        try count(key, of: "milliseconds")
    }

    public func strings(_ key: String, of what: String) throws(FieldError) -> [String]? {
        guard let value = value(key) else { return nil }
        guard case .array(let items) = value else { throw mismatch(key, "an array of \(what)", value) }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else { throw mismatch("\(key)[\(index)]", "a string", item) }
            result.append(text)
        }
        return result
    }

    public func object(_ key: String) throws(FieldError) -> JSONObject? {
        guard let value = value(key) else { return nil }
        guard case .object(let object) = value else { throw mismatch(key, "an object", value) }
        return object
    }

    public func array(_ key: String) throws(FieldError) -> [JSONValue]? {
        guard let value = value(key) else { return nil }
        guard case .array(let items) = value else { throw mismatch(key, "an array", value) }
        return items
    }

    /// For members that must be there.
    public func required<T>(_ key: String, _ read: (String) throws(FieldError) -> T?) throws(FieldError) -> T {
        guard let value = try read(key) else { throw FieldError(field: key, "needs \"\(key)\"") }
        return value
    }

    /// `"key" must be EXPECTED, found WHAT`.
    public func mismatch(_ key: String, _ expected: String, _ value: JSONValue, sameType: Bool = false) -> FieldError {
        FieldError(field: key, "\"\(key)\" must be \(expected), found \(sameType ? Self.describe(value) : value.typeName)")
    }

    /// A value as an error message shows it; long strings are cut.
    public static func describe(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return "\"" + (text.count > 40 ? text.prefix(39) + "…" : text) + "\""
        case .number, .bool: return JSONWriter.string(value)
        default: return value.typeName
        }
    }
}

extension FieldError {
    /// A config check's error, said of a request's field: `"limits.memory" must be a size ...`.
    init(_ error: ConfigError) {
        let path = error.keyPath ?? ""
        let message = error.message
        if message.hasPrefix("expected ") {
            self.init(field: path, "\"\(path)\" must be " + message.dropFirst("expected ".count))
        } else if message.hasPrefix("unknown key") {
            self.init(field: path, "unknown key \"\(path)\"" + message.dropFirst("unknown key".count))
        } else {
            self.init(field: path, "\"\(path)\": \(message)")
        }
    }
}

/// A JSON value. Objects keep their members in order, so files drover writes read in the
/// order they were built and round-trip unchanged.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
    /// An integral number that fits an Int exactly.
    public var intValue: Int? {
        guard case .number(let n) = self, n.rounded() == n, abs(n) < 9.0e15 else { return nil }
        return Int(n)
    }
    /// The name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

extension JSONValue {
    public init(_ value: Int) { self = .number(Double(value)) }
    public init(_ value: String?) { self = value.map { .string($0) } ?? .null }
}

/// A JSON object with its members in insertion order. Small objects (drover's files, most
/// frames) are searched linearly; past `indexedFrom` members a key index makes lookup and
/// insertion constant time, so one frame with a million keys parses in linear time.
/// (Swift seeds String hashing per process, so chosen keys cannot collide on purpose.)
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    public private(set) var values: [JSONValue] = []
    /// Each key's position in `keys`; kept only while the object has `indexedFrom` members or more.
    private var positions: [String: Int]?
    static let indexedFrom = 17

    public init() {}

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// Setting a key that is there replaces its value in place (so a duplicate key in a
    /// document keeps its first position and its last value); nil removes it.
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { values[$0] } }
        set {
            if let index = position(of: key) {
                if let newValue {
                    values[index] = newValue
                } else {
                    remove(at: index)
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    public var members: Zip2Sequence<[String], [JSONValue]> { zip(keys, values) }

    /// Members only: the index is a cache.
    public static func == (left: JSONObject, right: JSONObject) -> Bool {
        left.keys == right.keys && left.values == right.values
    }

    private func position(of key: String) -> Int? {
        if let positions { return positions[key] }
        return keys.firstIndex(of: key)
    }

    private mutating func append(_ key: String, _ value: JSONValue) {
        keys.append(key)
        values.append(value)
        if positions != nil {
            positions![key] = keys.count - 1
        } else if keys.count >= Self.indexedFrom {
            positions = Dictionary(uniqueKeysWithValues: zip(keys, keys.indices))
        }
    }

    /// Linear, as removing from the middle of an array is; only drover's own code removes.
    private mutating func remove(at index: Int) {
        let key = keys.remove(at: index)
        values.remove(at: index)
        guard positions != nil else { return }
        if keys.count < Self.indexedFrom {
            positions = nil
            return
        }
        positions![key] = nil
        for moved in index..<keys.count { positions![keys[moved]] = moved }
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements { self[key] = value }
    }
}

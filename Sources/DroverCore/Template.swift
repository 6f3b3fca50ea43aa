/// `{name}` placeholders, replaced in one pass (argv of workers, onComplete): a substituted
/// value is never searched again, so a prompt holding `{model}` stays as it was written,
/// and the result does not depend on the order of the names. Unknown names stay as they are.
public enum Template {
    public static func expand(_ text: String, _ values: [String: String]) -> String {
        guard text.utf8.contains(UInt8(ascii: "{")) else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            let afterOpen = rest.index(after: open)
            if let close = rest[afterOpen...].firstIndex(of: "}"), let value = values[String(rest[afterOpen..<close])] {
                out += value
                rest = rest[rest.index(after: close)...]
            } else {
                out += "{"
                rest = rest[afterOpen...]
            }
        }
        return out + rest
    }
}

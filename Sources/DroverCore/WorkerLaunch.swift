/// Turns an agent's command into what `uv_spawn` needs: the program looked up, argv
/// placeholders filled in (never through a shell), and the environment SPEC section 8 allows.
public struct WorkerLaunch: Sendable {
    /// Folders searched before PATH for a bare program name (the one holding `drover`).
    public var programDirectories: [String]
    /// The supervisor's environment, from which a child gets only the allowed variables.
    public var environment: [String: String]

    public init(programDirectories: [String], environment: [String: String]) {
        self.programDirectories = programDirectories
        self.environment = environment
    }

    static let placeholderNames = ["prompt", "prompt_file", "task_id", "session_id", "agent", "provider", "model", "workdir"]

    /// A program's path, or nil when it is nowhere to be found.
    public func locate(_ program: String) -> String? {
        if program.contains("/") { return program }
        let pathDirectories = (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
        for directory in programDirectories + pathDirectories where !directory.isEmpty {
            let candidate = directory + "/" + program
            if FileSystem.isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    /// Replaces `{name}` wherever it stands inside each argument, in one pass.
    public static func fillPlaceholders(_ arguments: [String], values: [String: String]) -> [String] {
        arguments.map { Template.expand($0, values) }
    }

    public static func usesPrompt(_ arguments: [String]) -> Bool {
        arguments.contains { $0.contains("{prompt}") || $0.contains("{prompt_file}") }
    }

    /// PATH, HOME, LANG, TERM and DROVER_* from the supervisor, the agent's `passEnv` names
    /// (the launching client's value over the supervisor's), then the task's `env` (the
    /// agent's merged with the task's own), then drover's per-task variables.
    public func childEnvironment(passEnv: [String], clientValues: [String: String] = [:], taskEnv: [String: String],
                                 taskVariables: [String: String]) -> [String] {
        var env: [String: String] = [:]
        for (name, value) in environment where ["PATH", "HOME", "LANG", "TERM"].contains(name) || name.hasPrefix("DROVER_") {
            env[name] = value
        }
        for name in passEnv { env[name] = clientValues[name] ?? environment[name] }
        for (name, value) in taskEnv { env[name] = value }
        for (name, value) in taskVariables { env[name] = value }
        return env.map { "\($0.key)=\($0.value)" }.sorted()
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        let targetChars = Array(target.utf8)
        let bytes = self.utf8
        var index = bytes.startIndex
        while index != bytes.endIndex {
            if bytes[index] == targetChars[0] {
                var a = index
                var matched = true
                for byte in targetChars {
                    guard a != bytes.endIndex, bytes[a] == byte else {
                        matched = false
                        break
                    }
                    a = bytes.index(after: a)
                }
                if matched { return index..<a }
            }
            index = bytes.index(after: index)
        }
        return nil
    }
}

import DroverCore
import DroverDaemon

/// A background task's end, as drover tells a model about it.
public struct TaskEnding: Sendable, Equatable {
    public let taskID: String
    public let description: String
    public let agent: String?
    public let status: TaskStatus
    public let reason: String?

    public init(taskID: String, description: String, agent: String?, status: TaskStatus, reason: String?) {
        self.taskID = taskID
        self.description = description
        self.agent = agent
        self.status = status
        self.reason = reason
    }

    /// "completed", or "error (lost)": why it ended unless it completed.
    public var statusText: String {
        guard status != .completed, let reason else { return status.rawValue }
        return "\(status.rawValue) (\(reason))"
    }
}

/// The words in which drover tells a model that tasks ended or still run: at the start of
/// an MCP tool answer, and in what the Claude Code hook adds to the conversation. Every
/// task gets one line beginning `- bg_...`, which `DroverToolText.scan` reads back, so the
/// hook can tell from a transcript which ends the model has seen already.
public enum TaskEndingText {
    /// Heads the ends at the start of an MCP tool answer.
    public static let answerHeading = "Background tasks that ended since drover's previous answer:"
    /// Separates those ends from the answer itself.
    public static let separator = "\n\n---\n\n"

    public static func line(_ ending: TaskEnding) -> String {
        "- \(ending.taskID) \(label(ending.description, ending.agent)) ended: \(ending.statusText). "
            + "Read its result with background_output, task_id \"\(ending.taskID)\"."
    }

    /// The answer, preceded by the ends it reports (if any).
    public static func answer(_ text: String, after endings: [TaskEnding]) -> String {
        guard !endings.isEmpty else { return text }
        return ([answerHeading] + endings.map(line)).joined(separator: "\n") + separator + text
    }

    /// A task not ended yet: `- bg_... "description" (agent explore): running`.
    public static func openLine(taskID: String, description: String, agent: String?, status: String) -> String {
        "- \(taskID) \(label(description, agent)): \(status)"
    }

    private static func label(_ description: String, _ agent: String?) -> String {
        let title = TaskText.oneLine(description)
        var text = title.isEmpty ? "" : "\"\(title)\""
        if let agent, !agent.isEmpty { text += (text.isEmpty ? "" : " ") + "(agent \(agent))" }
        return text.isEmpty ? "(no description)" : text
    }
}

/// What a model was told in the text of a drover tool answer: which tasks were launched,
/// and which ended with the model told so (a reported end, a result, a cancellation).
public struct DroverToolText: Equatable, Sendable {
    public var launched: [String] = []
    public var told: [String] = []

    public init() {}

    public var isEmpty: Bool { launched.isEmpty && told.isEmpty }

    public mutating func add(_ other: DroverToolText) {
        launched += other.launched
        told += other.told
    }

    /// Reads one answer text; anything that is not drover's is ignored. Cheap for text
    /// without a task id, which is nearly all a transcript holds.
    public static func scan(_ text: String) -> DroverToolText {
        var found = DroverToolText()
        guard text.contains("bg_") else { return found }
        /// Which answer the lines being read belong to.
        enum Section { case none, launch, result, cancel }
        var section = Section.none
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line == "Background task launched successfully." {
                section = .launch
            } else if line == "Task Result" {
                section = .result
            } else if line == "Task Status" || line == TaskEndingText.answerHeading[...] || line == "---" {
                section = .none
            } else if line.hasPrefix("Cancelled "), line.contains("background task(s)") {
                section = .cancel
            } else if line.hasPrefix("Task ID: "), let id = taskID(at: line.dropFirst(9)) {
                switch section {
                case .launch: found.launched.append(id)
                case .result: found.told.append(id)
                case .none, .cancel: break
                }
            } else if line.hasPrefix("- "), let id = taskID(at: line.dropFirst(2)), line.contains(" ended: "),
                      line.contains("task_id \"\(id)\"") {
                found.told.append(id)
            } else if section == .cancel, line.hasPrefix("| "), let id = taskID(at: line.dropFirst(2)) {
                found.told.append(id)
            } else if line.hasPrefix("Already ended: ") {
                for word in line.dropFirst(15).split(separator: " ") {
                    if let id = taskID(at: word) { found.told.append(id) }
                }
            }
        }
        return found
    }

    /// The task id (bg_ and 8 hex digits) at the start of `text`.
    static func taskID(at text: Substring) -> String? {
        let candidate = String(text.prefix(11))
        guard TaskIdentifiers.isTaskID(candidate) else { return nil }
        if let next = text.dropFirst(11).first, next.isLetter || next.isNumber { return nil }
        return candidate
    }
}

/// What a listing shows of a task, and all the daemon holds in memory of one that ended:
/// the full record stays in its task.json, read back when asked for (`Supervisor.snapshot`).
public struct TaskRow: Sendable {
    public var id: String
    public var sessionID: String
    public var agent: String
    public var description: String
    public var status: TaskStatus
    public var waitingFor: WaitReason?
    public var reason: TaskReason?
    public var durationMs: Int64?
    public var createdMs: Int64
    public var endedMs: Int64?

    public init(_ snapshot: TaskSnapshot) {
        id = snapshot.id
        sessionID = snapshot.sessionID
        agent = snapshot.agent
        description = snapshot.description
        status = snapshot.status
        waitingFor = snapshot.waitingFor
        reason = snapshot.reason
        durationMs = snapshot.durationMs
        createdMs = snapshot.createdMs
        endedMs = snapshot.endedMs
    }
}

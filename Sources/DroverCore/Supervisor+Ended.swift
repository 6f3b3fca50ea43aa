import DroverWire

/// Ended tasks the daemon no longer holds whole (SPEC 15): their rows stay in memory for
/// listings, their records are read back from task.json when asked for, and `forget`
/// removes them from the table and their folders from the disk.
extension Supervisor {
    /// Why a task may not be forgotten.
    public enum ForgetRefusal: Sendable, Equatable, CustomStringConvertible {
        case unknown(String)
        case notEnded(String, TaskStatus)
        /// A task that has not ended waits for it (`after`, or a worktree base).
        case needed(String, by: String)

        public var description: String {
            switch self {
            case .unknown(let id): "no such task: \(id)"
            case .notEnded(let id, let status): "task \(id) is \(status.rawValue): only ended tasks are removed"
            case .needed(let id, let other): "task \(id) is kept: \(other), which has not ended, depends on it"
            }
        }
    }

    /// A task as `status` lists it, without reading its file.
    public func row(_ taskID: String) -> TaskRow? {
        if tasks[taskID] != nil { return view(taskID).map(TaskRow.init) }
        return ended[taskID]
    }

    /// Ended tasks held as rows only.
    public var endedCount: Int { ended.count }

    /// Ended tasks, oldest first, that this supervisor may forget or keep.
    public var endedRows: [TaskRow] {
        order.compactMap { id in ended[id] ?? tasks[id].flatMap { $0.published?.status.isTerminal == true ? TaskRow($0.published!) : nil } }
    }

    /// Ended tasks that a task which has not ended depends on, with one such task each.
    public var neededTasks: [String: String] {
        var needed: [String: String] = [:]
        for (id, task) in tasks where !task.record.status.isTerminal {
            for dependency in task.lifecycle.settings.dependencies where needed[dependency] == nil { needed[dependency] = id }
        }
        return needed
    }

    /// Nil when the task may be forgotten now: it ended, its end is on disk and reported,
    /// and no task that has not ended depends on it.
    public func refusalToForget(_ taskID: String, needed: [String: String]? = nil) -> ForgetRefusal? {
        if let task = tasks[taskID] {
            guard task.record.status.isTerminal, task.published?.status.isTerminal == true else {
                return .notEnded(taskID, view(taskID)?.status ?? task.record.status)
            }
        } else if ended[taskID] == nil {
            return .unknown(taskID)
        }
        if let other = (needed ?? neededTasks)[taskID] { return .needed(taskID, by: other) }
        return nil
    }

    /// Forgets ended tasks (each must pass `refusalToForget`): out of the table at once, and
    /// their folders removed by the writer in bounded chunks (other writes go between them),
    /// as is a session's transcript once none of its tasks is left. Only folders of known task
    /// ids under the state folder are removed, never through a link. `whenRemoved` runs once
    /// all of them have been tried, with the removals of these folders that failed.
    public func forget(_ taskIDs: [String], whenRemoved: (([FileError]) -> Void)? = nil) {
        loop.assertOnLoopThread()
        let needed = neededTasks
        var gone: Set<String> = []
        for id in taskIDs where refusalToForget(id, needed: needed) == nil && TaskIdentifiers.isTaskID(id) {
            let sessionID = ended[id]?.sessionID ?? tasks[id]!.record.sessionID
            tasks[id] = nil
            ended[id] = nil
            gone.insert(id)
            store.removeTaskDirectory(id)
            if var members = sessions[sessionID] {
                members.removeAll { $0 == id }
                if members.isEmpty {
                    sessions[sessionID] = nil
                    if TaskIdentifiers.isSessionID(sessionID) { store.removeSessionFile(sessionID) }
                } else {
                    sessions[sessionID] = members
                }
            }
        }
        if !gone.isEmpty { order.removeAll { gone.contains($0) } }
        guard let whenRemoved else { return }
        let tasksFolder = store.root + "/tasks/"
        store.whenRemoved { failures in
            whenRemoved(failures.filter { failure in
                // A failure inside one of these folders names a path under tasks/<id>.
                guard failure.path.hasPrefix(tasksFolder) else { return false }
                return gone.contains(String(failure.path.dropFirst(tasksFolder.count).prefix { $0 != "/" }))
            })
        }
    }

    /// The driver of a task whose end is reported goes; its row stays.
    func letGo(_ task: TaskDriver) {
        guard tasks[task.id] === task, let published = task.published else { return }
        tasks[task.id] = nil
        ended[task.id] = TaskRow(published)
    }

    /// A let-go task's record and request, read back from its task.json (or, while its last
    /// record is still on its way there, that record). If that file cannot be read any more,
    /// a record built from its row says so.
    func endedRecord(_ taskID: String) -> (snapshot: TaskSnapshot, request: TaskRequest?)? {
        guard let row = ended[taskID] else { return nil }
        if let unwritten = store.unwrittenRecord(taskID) {
            return (unwritten, unwritten.extra["request"]?.objectValue.flatMap { TaskRequest(json: $0, snapshot: unwritten) })
        }
        do {
            let object = try JSONParser.parse(try store.folder.read("tasks/\(taskID)/task.json")).value.objectValue
            if let object, let snapshot = TaskSnapshot(json: object), snapshot.id == taskID {
                return (snapshot, object["request"]?.objectValue.flatMap { TaskRequest(json: $0, snapshot: snapshot) })
            }
            return (placeholder(row, problem: "its task.json is no longer a task record"), nil)
        } catch {
            return (placeholder(row, problem: "its task.json cannot be read back (\(error))"), nil)
        }
    }

    private func placeholder(_ row: TaskRow, problem: String) -> TaskSnapshot {
        var snapshot = TaskSnapshot(id: row.id, sessionID: row.sessionID, agent: row.agent, provider: nil, model: nil, key: row.agent,
                                    description: row.description, prompt: "", createdMs: row.createdMs, ttlMs: 0, pool: "")
        snapshot.status = row.status
        snapshot.reason = row.reason
        snapshot.endedMs = row.endedMs
        snapshot.error = problem
        return snapshot
    }
}

import DroverWire

/// Jobs that must not overlap, one after another (git's worktree list of one repository:
/// two `worktree add`s at once race for the same name in `.git/worktrees`).
final class SerialJobs {
    private var jobs: [(@escaping () -> Void) -> Void] = []
    private var busy = false

    func add(_ job: @escaping (_ done: @escaping () -> Void) -> Void) {
        jobs.append(job)
        if !busy { next() }
    }

    private func next() {
        guard !jobs.isEmpty else {
            busy = false
            return
        }
        busy = true
        let job = jobs.removeFirst()
        job { [weak self] in self?.next() }
    }
}

/// Worktree tasks (SPEC 13): the worktree made before the first attempt, finished after the end.
extension Supervisor {
    /// One git command on the loop.
    private var gitStep: GitStep? {
        guard let git else { return nil }
        return { [loop] arguments, directory, environment, then in
            git.run(arguments, in: directory, extraEnvironment: environment, loop: loop, then: then)
        }
    }

    /// The same, after the repository's other changes to its worktree list.
    private func adminStep(_ step: @escaping GitStep) -> GitStep {
        return { [weak self] arguments, directory, environment, then in
            guard let self else { return }
            let jobs = self.worktreeJobs[directory] ?? SerialJobs()
            self.worktreeJobs[directory] = jobs
            jobs.add { done in
                step(arguments, directory, environment) { result in
                    done()
                    then(result)
                }
            }
        }
    }

    /// Makes the branch `drover/<id>` at the base and its worktree, then tells the task.
    func prepareWorktree(_ task: TaskDriver) {
        guard var plan = task.worktree else { return task.feed(.workdirFailed("the task has no worktree settings")) }
        if let problem = plan.problem { return task.feed(.workdirFailed(problem)) }
        guard let step = gitStep else { return task.feed(.workdirFailed("cannot make a worktree: \(Git.notFound)")) }
        if let dependency = WorktreeSettings(base: plan.base).baseTask {
            guard let head = snapshot(dependency)?.worktreeHead else {
                return task.feed(.workdirFailed("base @\(dependency): that task left no branch (it did not run with \"workdir\": \"worktree\")"))
            }
            plan.base = head
        }
        var arguments = ["worktree", "add", "-q", "-b", plan.branch, plan.path, plan.base]
        if let earlier = task.record.extra["worktree"]?.objectValue?["base"]?.stringValue, !earlier.hasPrefix("@") {
            // An attempt before a restart made it: the same branch goes on, in the same folder.
            plan.base = earlier
            if WorktreeRecovery.registeredRepository(of: plan.path) != nil {
                task.worktree = plan
                return task.feed(.workdirReady(worktree: plan.runningRecord))
            }
            arguments = ["worktree", "add", "-q", plan.path, plan.branch]
        }
        do {
            try store.createTaskDirectoryNow(task.id)
        } catch {
            return task.feed(.workdirFailed("cannot create the task's folder: \(error)"))
        }
        adminStep(step)(arguments, plan.repo, []) { [weak task] made in
            guard let task else { return }
            guard made.succeeded else {
                return task.feed(.workdirFailed("cannot make the worktree \(plan.path) on a new branch \(plan.branch) from \(plan.base) in \(plan.repo): \(made.message)"))
            }
            task.worktree = plan
            task.feed(.workdirReady(worktree: plan.runningRecord))
        }
    }

    /// Commits what the worker left, writes changes.diff, removes the folder; tells the task.
    func finishWorktree(_ task: TaskDriver) {
        guard let plan = task.worktree, let step = gitStep else {
            return task.feed(.workdirFinished(worktree: task.record.extra["worktree"] ?? .null))
        }
        let finish = WorktreeFinish(plan: plan, message: WorktreeFinish.message(description: task.record.description, taskID: task.id),
                                    diffFile: store.taskDirectory(task.id) + "/changes.diff", step: step, admin: adminStep(step))
        finish.run { [weak task] record in task?.feed(.workdirFinished(worktree: record)) }
    }
}

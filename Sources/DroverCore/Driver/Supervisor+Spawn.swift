import Glibc

/// Starting a task's worker: its command line, environment, limits and folder, then the spawn.
extension Supervisor {
    struct StartedWorker {
        let child: ChildProcess
        let cgroup: String?
    }

    struct SpawnFailure: Error {
        let message: String
    }

    /// Builds the worker's command line and environment and starts it.
    func spawnWorker(for task: TaskDriver) -> Result<StartedWorker, SpawnFailure> {
        let record = task.record
        let plan = task.plan
        let promptFile = store.taskDirectory(record.id) + "/prompt.txt"
        if plan.cwdIsPrivate {
            do {
                try store.folder.makeFolder(store.relative(plan.cwd) ?? plan.cwd)
            } catch {
                return .failure(SpawnFailure(message: "cannot create the task's working folder: \(error)"))
            }
        }
        if plan.arguments.contains(where: { $0.contains("{prompt_file}") }) {
            do {
                try store.createTaskDirectoryNow(record.id)
                try store.folder.write("tasks/\(record.id)/prompt.txt", Array(record.prompt.utf8))
            } catch {
                return .failure(SpawnFailure(message: "cannot write the prompt file: \(error)"))
            }
        }
        let values: [String: String] = [
            "prompt": record.prompt, "prompt_file": promptFile, "task_id": record.id, "session_id": record.sessionID,
            "agent": record.agent, "provider": record.provider ?? "", "model": record.model ?? "", "workdir": plan.cwd,
        ]
        let argv = WorkerLaunch.fillPlaceholders(plan.arguments, values: values)
        if let index = argv.firstIndex(where: { $0.utf8.contains(0) }) {
            return .failure(SpawnFailure(message: "cannot start \(argv[0]): argument \(index) holds a NUL byte, which no program can be given"))
        }
        guard let program = launch.locate(argv[0]) else {
            return .failure(SpawnFailure(message: "cannot start \(argv[0]): not found beside drover (\(launch.programDirectories.joined(separator: ", "))) or on PATH"))
        }
        guard FileSystem.isDirectory(plan.cwd) else {
            return .failure(SpawnFailure(message: "cannot start \(argv[0]): its working folder \(plan.cwd) does not exist"))
        }
        let depth = (Int(launch.environment["DROVER_DEPTH"] ?? "0") ?? 0) + 1
        var variables = [
            "DROVER_TASK_ID": record.id, "DROVER_SESSION_ID": record.sessionID, "DROVER_SLOT": String(record.slot ?? 0),
            "DROVER_DEPTH": String(depth), "DROVER_AGENT": record.agent, "DROVER_ATTEMPT": String(record.attempt),
        ]
        // The worker's argv, then what wraps it, inside out: bwrap, drover-limits, srun.
        var worker = [program] + argv.dropFirst()
        if let sandbox = plan.sandbox {
            guard let bwrap = launch.locate("bwrap") else {
                return .failure(SpawnFailure(message: "cannot start bwrap (the task's sandbox): not found on PATH (\(launch.environment["PATH"] ?? "")); install bubblewrap"))
            }
            var box = SandboxLaunch(settings: sandbox, stateFolder: store.root, taskFolder: store.taskDirectory(record.id),
                                    sessionFile: store.sessionFile(record.sessionID), workdir: plan.cwd, home: launch.environment["HOME"])
            box.needsWritable = plan.agent.sandboxWritable.compactMap(box.expand)
            if let repo = plan.worktree?.repo { box.needsWritable.append(repo + "/.git") }
            if !FileSystem.exists(box.emptyFile) {
                do {
                    try store.folder.write("sandbox-empty", [])
                } catch {
                    return .failure(SpawnFailure(message: "cannot prepare the task's sandbox: \(error)"))
                }
            }
            // Under the private /tmp, the top folder the worker's files come from stays visible.
            box.programFolders = worker.filter { $0.hasPrefix("/tmp/") }.compactMap { path in
                path.split(separator: "/").dropFirst().first.map { "/tmp/" + $0 }
            }
            variables["DROVER_SANDBOX"] = box.environmentValue
            worker = box.arguments(bwrap: bwrap) + worker
        }
        let environment = launch.childEnvironment(passEnv: plan.agent.passEnv, clientValues: plan.clientPassEnv, taskEnv: plan.env,
                                                  taskVariables: variables)
        var spec = SpawnSpec(executable: program, arguments: argv, environment: environment, workingDirectory: plan.cwd)
        if plan.sandbox != nil {
            spec.executable = worker[0]
            spec.arguments = worker
        }
        var cgroup: String?
        if let slurm = plan.slurm {
            guard let srun = launch.locate(slurm.srun) else {
                return .failure(SpawnFailure(message: "cannot start \(slurm.srun) (the task's Slurm launcher): not found on PATH (\(launch.environment["PATH"] ?? ""))"))
            }
            if !plan.limits.isEmpty {
                // Limits are set on the node, by the helper there (no cgroup of this host's).
                guard let helper = launch.locate("drover-limits") else {
                    return .failure(SpawnFailure(message: "cannot apply the task's limits: drover-limits not found beside drover or on PATH"))
                }
                worker = [helper] + plan.limits.helperArguments + ["--"] + worker
            }
            let license = record.provider ?? LauncherSettings.licenseName(record.key)
            spec.executable = srun
            spec.arguments = slurm.srunArguments(taskID: record.id, license: license, ttlMs: task.lifecycle.settings.timers.taskTtl, worker: worker)
        } else if !plan.limits.isEmpty {
            // Limits are set between fork and exec by a helper that then becomes the worker.
            guard let helper = launch.locate("drover-limits") else {
                return .failure(SpawnFailure(message: "cannot apply the task's limits: drover-limits not found beside drover or on PATH"))
            }
            spec.executable = helper
            cgroup = TaskCgroups.make(taskID: record.id, limits: plan.limits)
            let joining = cgroup.map { ["--cgroup", $0] } ?? []
            spec.arguments = ["drover-limits"] + joining + plan.limits.helperArguments + ["--"] + worker
        }
        do {
            return .success(StartedWorker(child: try ChildProcess.spawn(loop: loop, spec: spec), cgroup: cgroup))
        } catch {
            if let cgroup { TaskCgroups.remove(cgroup, loop: loop) }
            return .failure(SpawnFailure(message: error.description))
        }
    }
}

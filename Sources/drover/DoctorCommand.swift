import ArgumentParser
import DroverCore
import DroverDaemon
import DroverWire
import Glibc

/// `drover doctor`: checks a setup, one line per check with the fix. Never starts a daemon.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this setup: companion programs, state folder, config, agent programs and credentials, cgroups, sandbox, Slurm, disk.",
        discussion: "Exit 0 when every check passes, 1 otherwise. Never starts a daemon."
    )

    @OptionGroup var common: CommonOptions

    /// The programs drover starts from its own folder.
    static let companions = ["drover-warden", "drover-mock-agent", "drover-limits", "drover-adapter", "drover-mcp"]

    struct Check {
        let name: String
        let ok: Bool
        let detail: String
        /// What to do when it fails.
        let fix: String?
        /// A failing check that drover works without (shown as "warn", exit still 0).
        var advisory = false
    }

    func run() throws {
        let environment = ProcessEnvironment.current()
        var checks: [Check] = []
        let ownFolder = FileSystem.executableDirectory()
        for name in Self.companions {
            let path = ownFolder + "/" + name
            let ok = FileSystem.isExecutableFile(path)
            checks.append(Check(name: "companion \(name)", ok: ok, detail: ok ? path : "missing: \(path)",
                                fix: "install drover's programs together: copy \(name) from the same build into \(ownFolder)"))
        }
        let state = StateFolder(explicit: common.stateDirectory, environment: environment)
        if FileSystem.exists(state.path) {
            do {
                try FolderPermissions.check(path: state.path)
                checks.append(Check(name: "state folder", ok: true, detail: "\(state.path): yours, private", fix: nil))
            } catch {
                checks.append(Check(name: "state folder", ok: false, detail: error.description,
                                    fix: "chmod 700 \(state.path) (and make sure you own it)"))
            }
        } else {
            checks.append(Check(name: "state folder", ok: true, detail: "\(state.path): not made yet (drover makes it private)", fix: nil))
        }
        var config: DroverConfig?
        do {
            let loaded = try ConfigLoader.load(explicitPath: common.configFile, environment: environment)
            config = loaded
            checks.append(Check(name: "config", ok: true, detail: loaded.source ?? "no config file: built-in agents", fix: nil))
        } catch {
            checks.append(Check(name: "config", ok: false, detail: error.description, fix: "fix the file at the line named, or run drover init --force"))
        }
        if let config {
            checks += agentChecks(config, environment: environment, ownFolder: ownFolder)
        }
        checks.append(cgroupCheck())
        checks.append(spaceCheck(state.path))
        if let daemon = daemonCheck(state, environment: environment) { checks.append(daemon) }

        let failed = checks.filter { !$0.ok && !$0.advisory }
        if common.json {
            let items: [JSONValue] = checks.map { check in
                var object: JSONObject = ["check": .string(check.name), "ok": .bool(check.ok), "detail": .string(check.detail)]
                if check.advisory { object["advisory"] = true }
                if !check.ok, let fix = check.fix { object["fix"] = .string(fix) }
                return .object(object)
            }
            Terminal.out(JSONWriter.string(["ok": .bool(failed.isEmpty), "checks": .array(items)]))
        } else {
            for check in checks {
                var line = "\(check.ok ? "ok  " : check.advisory ? "warn" : "FAIL") \(check.name): \(check.detail)"
                if !check.ok, let fix = check.fix { line += " -- \(fix)" }
                Terminal.out(line)
            }
            Terminal.out(failed.isEmpty ? "all \(checks.count) checks passed" : "\(failed.count) of \(checks.count) checks failed")
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// Each agent in use (the mock agents and real ones a config names).
    func agentChecks(_ config: DroverConfig, environment: [String: String], ownFolder: String) -> [Check] {
        var checks: [Check] = []
        var bwrapNeeded = false
        var slurmNeeded = config.launcher.map { if case .slurm = $0 { true } else { false } } ?? false
        // The built-in claude/codex/opencode entries are there whether installed or not: only
        // the agents the config file names, and the three roles, are checked.
        let builtIn = DroverConfig.builtInAgents
        let names = config.agents.keys.filter { name in
            ["explore", "librarian", "oracle"].contains(name) || config.agents[name] != builtIn[name]
        }.sorted()
        for name in names {
            guard let agent = config.agents[name], let program = agent.command.first else { continue }
            if agent.sandbox != nil { bwrapNeeded = true }
            if let launcher = agent.launcher, case .slurm = launcher { slurmNeeded = true }
            let path = program.contains("/") ? program : (FileSystem.isExecutableFile(ownFolder + "/" + program) ? ownFolder + "/" + program : AgentCLIDetection.find(program, environment: environment)?.path)
            if let path, FileSystem.isExecutableFile(path) {
                checks.append(Check(name: "agent \(name) program", ok: true, detail: path, fix: nil))
            } else {
                checks.append(Check(name: "agent \(name) program", ok: false, detail: "\(program) not found",
                                    fix: "install \(program) or put its folder on PATH"))
            }
            // The CLI behind drover-adapter.
            if program == "drover-adapter", agent.command.count > 1 {
                let kind = agent.command[1]
                var cli: String? = kind
                if let at = agent.command.firstIndex(of: "--program"), at + 1 < agent.command.count, agent.command[..<at].firstIndex(of: "--") == nil {
                    cli = agent.command[at + 1]
                }
                let cliPath = cli.flatMap { $0.contains("/") ? ($0) : AgentCLIDetection.find($0, environment: environment)?.path }
                if let cliPath, FileSystem.isExecutableFile(cliPath) {
                    let version = AgentCLIDetection.version(of: cliPath, environment: environment)
                    checks.append(Check(name: "agent \(name) CLI", ok: true, detail: "\(cliPath) (\(version ?? "version unknown"))", fix: nil))
                } else {
                    checks.append(Check(name: "agent \(name) CLI", ok: false, detail: "\(cli ?? kind) not found",
                                        fix: "install \(kind) (see drover init), or give its path with --program in the agent's command"))
                }
            }
            let missing = agent.passEnv.filter { environment[$0] == nil }
            // An unset passEnv variable is usually a forgotten export.
            if !agent.passEnv.isEmpty {
                let ok = missing.isEmpty
                checks.append(Check(name: "agent \(name) passEnv", ok: ok,
                                    detail: ok ? "all set: \(agent.passEnv.joined(separator: ", "))" : "not set: \(missing.joined(separator: ", "))",
                                    fix: "export \(missing.first ?? "") (or remove it from the agent's passEnv)"))
            }
        }
        if bwrapNeeded {
            let bwrap = AgentCLIDetection.find("bwrap", environment: environment)?.path
            checks.append(Check(name: "bwrap", ok: bwrap != nil, detail: bwrap ?? "not on PATH, and an agent has a sandbox",
                                fix: "install bubblewrap (apt-get install bubblewrap) or remove the agent's sandbox"))
        }
        if slurmNeeded {
            for tool in ["srun", "scontrol"] {
                let path = AgentCLIDetection.find(tool, environment: environment)?.path
                checks.append(Check(name: tool, ok: path != nil, detail: path ?? "not on PATH, and a Slurm launcher is configured",
                                    fix: "run drover on a Slurm node (or put Slurm's bin folder on PATH)"))
            }
        }
        return checks
    }

    /// A running daemon's config against the one this client would name (read-only: its stats).
    func daemonCheck(_ state: StateFolder, environment: [String: String]) -> Check? {
        guard FileSystem.exists(state.socket) else { return nil }
        let stats: StatsReply
        do {
            let client = try ControlClient.connect(state: state, autostart: false)
            stats = try client.call(StatsRequest())
        } catch {
            return Check(name: "daemon", ok: false, detail: error.message,
                         fix: "remove the stale socket \(state.socket) if no daemon runs, or see \(state.log)")
        }
        let mine = ConfigIdentity.named(explicitPath: common.configFile, environment: environment)
        guard let theirs = stats.config else {
            return Check(name: "daemon config", ok: true, detail: "daemon \(stats.pid) does not report its config", fix: nil)
        }
        let ok = theirs == mine
        let describe = { (identity: ConfigIdentity) in identity.path ?? "the built-in defaults" }
        return Check(name: "daemon config", ok: ok,
                     detail: ok ? "daemon \(stats.pid) runs \(describe(theirs))" : "daemon \(stats.pid) runs \(describe(theirs)), this client names \(describe(mine))\(theirs.path == mine.path ? " (edited since it was loaded)" : "")",
                     fix: "drover reload\(common.configFile.map { " --config " + FileSystem.absolute($0) } ?? "") (or drover shutdown, and the next command starts one on this config)")
    }

    func cgroupCheck() -> Check {
        switch SupervisorCgroup.probe() {
        case .created(let path):
            return Check(name: "cgroup delegation", ok: true, detail: "can make task cgroups under \(FileSystem.dirname(of: path))", fix: nil)
        case .unavailable(let reason):
            // Not fatal for drover (tasks still run), but their memory and CPU are then not limited per task.
            return Check(name: "cgroup delegation", ok: false, detail: reason,
                         fix: "run drover under a delegated cgroup, e.g. systemd-run --user --scope -p Delegate=yes drover serve", advisory: true)
        }
    }

    func spaceCheck(_ statePath: String) -> Check {
        var folder = statePath
        while !FileSystem.exists(folder), folder != "/" {
            folder = FileSystem.dirname(of: folder)
            if folder.isEmpty { folder = "/" }
        }
        var info = statvfs()
        guard statvfs(folder, &info) == 0 else {
            return Check(name: "free space", ok: false, detail: "statvfs \(folder): \(String(cString: strerror(errno)))", fix: "check the state folder's disk")
        }
        let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        let ok = free >= 100 << 20
        return Check(name: "free space", ok: ok, detail: "\(free >> 20) MiB free under \(folder)",
                     fix: "free some space (drover needs room for transcripts and results) or use --state-dir elsewhere")
    }
}

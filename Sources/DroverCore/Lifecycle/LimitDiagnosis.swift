import Glibc

/// Which of a task's resource limits an ending points to, in words: a death by SIGXCPU is
/// the cpuSeconds limit, an OOM kill in the task's cgroup the memory limit.
enum LimitDiagnosis {
    /// What a death by this signal says about the limits, if anything.
    static func hint(signal: Int32, limits: ResourceLimits) -> String {
        if signal == SIGXCPU, let seconds = limits.cpuSeconds { return ": the cpuSeconds limit of \(seconds) s was reached" }
        if signal == SIGXFSZ, let bytes = limits.fileSize { return ": the fileSize limit of \(bytes) bytes was reached" }
        if [SIGSEGV, SIGABRT, SIGBUS, SIGKILL].contains(signal), let bytes = limits.memory {
            return " (with a memory limit of \(bytes) bytes, which may have been reached)"
        }
        return ""
    }

    /// The outcome, its message extended by what the task's cgroup saw of its limits.
    static func explain(_ outcome: Outcome, usage: TaskCgroups.Usage?, limits: ResourceLimits) -> Outcome {
        guard let usage, outcome.status != .completed else { return outcome }
        var explained = outcome
        if usage.oomKills > 0, let memory = limits.memory {
            explained.message = (explained.message ?? "the worker ended")
                + "; the memory limit of \(memory) bytes was reached (the kernel's OOM killer ran \(usage.oomKills) time(s) in the task's cgroup)"
        }
        if usage.forkRefusals > 0, let processes = limits.processes {
            explained.message = (explained.message ?? "the worker ended")
                + "; the processes limit of \(processes) was reached (\(usage.forkRefusals) fork(s) refused in the task's cgroup)"
        }
        return explained
    }
}

func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS",
        SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM",
        SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
    ]
    return names[signal] ?? "signal \(signal)"
}

#ifndef DROVER_CLIBUV_SHIM_H
#define DROVER_CLIBUV_SHIM_H

// For posix_spawn's POSIX_SPAWN_SETSID and addchdir_np, and pipe2.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <uv.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>

// Swift 6 strict concurrency refuses the C globals stdout/stderr; these hand them over.
static inline FILE *drover_stdout(void) { return stdout; }
static inline FILE *drover_stderr(void) { return stderr; }

static inline int drover_errno(void) { return errno; }

// Marks every descriptor above 2 close-on-exec, so nothing the supervisor inherited or
// opened leaks into a worker. close_range is Linux 5.11+; older kernels fall back to a loop.
static inline void drover_cloexec_from_3(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
}

// syncfs, without depending on how the headers were configured.
static inline int drover_syncfs(int fd) { return (int)syscall(SYS_syncfs, fd); }

// Whether SIGCHLD is ignored (Swift cannot compare the handler with SIG_IGN).
static inline int drover_sigchld_is_ignored(void) {
    struct sigaction current;
    return sigaction(SIGCHLD, NULL, &current) == 0 && current.sa_handler == SIG_IGN;
}

// A pipe whose both ends are close-on-exec.
static inline int drover_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

// Starts a program with posix_spawn, which glibc runs with CLONE_VFORK: no copy of the
// supervisor's page tables and no copy-on-write faults afterwards, unlike fork(). The child
// gets its own session and process group (pgid = pid), the given descriptors as 0-2, an
// empty signal mask and default dispositions. Returns 0 or an errno (exec failures included).
static inline int drover_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                               const char *cwd, int in_fd, int out_fd, int err_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    if (cwd) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    sigset_t none, defaults;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attributes, &none);
    // Dispositions the supervisor ignores (SIGPIPE, or ones it inherited ignored) survive
    // exec; reset them. Handled signals reset by themselves.
    sigemptyset(&defaults);
    int reset[] = {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM,
                   SIGXFSZ, SIGXCPU, SIGTTIN, SIGTTOU, SIGTSTP};
    for (unsigned i = 0; i < sizeof reset / sizeof reset[0]; i++) sigaddset(&defaults, reset[i]);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return rc;
}

// Whether pid has ended, without reaping it: while the zombie exists its process group id
// stays reserved, so the group can still be killed without any risk of pid reuse.
static inline int drover_has_exited(pid_t pid) {
    siginfo_t info;
    info.si_pid = 0;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
    return info.si_pid == pid;
}

// Reaps pid: 1 with its exit code or terminating signal, 0 if it has not ended, -1 if it
// is not a child of ours.
static inline int drover_reap(pid_t pid, int *code, int *signal) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r != pid) return r < 0 && errno == ECHILD ? -1 : 0;
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    *signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return 1;
}

#endif

#ifndef DROVER_CLIBUV_SHIM_H
#define DROVER_CLIBUV_SHIM_H

#include <uv.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <time.h>

// Swift 6 strict concurrency refuses the C globals stdout/stderr; these hand them over.
static inline FILE *drover_stdout(void) { return stdout; }
static inline FILE *drover_stderr(void) { return stderr; }

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

static inline int drover_errno(void) { return errno; }

// syncfs needs _GNU_SOURCE in glibc headers; the raw syscall does not.
static inline int drover_syncfs(int fd) { return (int)syscall(SYS_syncfs, fd); }

// Whether SIGCHLD is ignored (Swift cannot compare the handler with SIG_IGN).
static inline int drover_sigchld_is_ignored(void) {
    struct sigaction current;
    return sigaction(SIGCHLD, NULL, &current) == 0 && current.sa_handler == SIG_IGN;
}

#endif

// drover-limits: applies resource limits, then becomes the worker.
//   drover-limits [--cgroup DIR] CPU_SECONDS MEMORY OPEN_FILES PROCESSES FILE_SIZE -- PROGRAM [ARGS...]
// With --cgroup it first moves itself into that cgroup v2 folder (the task's, which drover
// made with its memory.max and pids.max), so the worker and all it starts are counted there.
// Each limit is a number (seconds, bytes or a count) or "-" for none; soft and hard limits
// are both set, so the worker cannot raise them. The CPU hard limit is one second above the
// soft one: at the soft limit the worker gets SIGXCPU (which tells what happened), and only
// if it survives that, SIGKILL. drover starts it (with posix_spawn, which
// has no hook to run code between fork and exec) for tasks that have limits.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int apply(int resource, const char *value, const char *name, unsigned long long hard_extra) {
    if (strcmp(value, "-") == 0) return 0;
    char *end = NULL;
    unsigned long long n = strtoull(value, &end, 10);
    if (end == value || *end != '\0') {
        fprintf(stderr, "drover-limits: %s: not a number: %s\n", name, value);
        return -1;
    }
    struct rlimit limit = {(rlim_t)n, (rlim_t)(n + hard_extra)};
    if (setrlimit(resource, &limit) != 0) {
        fprintf(stderr, "drover-limits: cannot set %s to %s: %s\n", name, value, strerror(errno));
        return -1;
    }
    return 0;
}

// Moves this process into the cgroup folder (writing "0" to cgroup.procs means "me").
static int join_cgroup(const char *folder) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cgroup.procs", folder);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
        fprintf(stderr, "drover-limits: cannot join the task's cgroup %s: %s\n", folder, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--cgroup") == 0) {
        if (join_cgroup(argv[2]) != 0) return 125;
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 8 || strcmp(argv[6], "--") != 0) {
        fprintf(stderr, "usage: drover-limits [--cgroup DIR] CPU MEMORY OPEN_FILES PROCESSES FILE_SIZE -- PROGRAM [ARGS...]\n");
        return 125;
    }
    if (apply(RLIMIT_CPU, argv[1], "cpuSeconds", 1) || apply(RLIMIT_AS, argv[2], "memory", 0) ||
        apply(RLIMIT_NOFILE, argv[3], "openFiles", 0) || apply(RLIMIT_NPROC, argv[4], "processes", 0) ||
        apply(RLIMIT_FSIZE, argv[5], "fileSize", 0)) {
        return 125;
    }
    execv(argv[7], &argv[7]);
    fprintf(stderr, "drover-limits: cannot start %s: %s\n", argv[7], strerror(errno));
    return 127;
}

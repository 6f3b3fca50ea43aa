// drover-warden: kills what a supervisor leaves behind when the supervisor dies, however
// it dies (SIGKILL and the OOM killer included).
//
// A supervising drover starts one warden and keeps the write end of a pipe to its stdin.
// It writes one line per event:
//   "g PGID"  a task's process group started      "u PGID"  it ended and was reaped
//   "c DIR"   the supervisor's own cgroup v2 folder (every descendant is inside it)
// The pipe reaches end of file only when every copy of the write end is closed: the
// supervisor has exited. Then the warden kills every group still registered, kills the
// whole cgroup (which also catches descendants that left their group with setsid), removes
// the cgroup folder, and exits. It ignores the signals a terminal or `pkill drover` sends,
// so it outlives the supervisor it watches.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static pid_t *groups;
static size_t group_count, group_capacity;
static char cgroup_dir[4096];

static void add_group(pid_t pgid) {
    if (group_count == group_capacity) {
        size_t capacity = group_capacity ? group_capacity * 2 : 256;
        pid_t *grown = realloc(groups, capacity * sizeof *groups);
        if (!grown) return;
        groups = grown;
        group_capacity = capacity;
    }
    groups[group_count++] = pgid;
}

static void remove_group(pid_t pgid) {
    for (size_t i = group_count; i > 0; i--) {
        if (groups[i - 1] == pgid) {
            groups[i - 1] = groups[--group_count];
            return;
        }
    }
}

static void handle_line(const char *line) {
    if (line[0] == 'g' && line[1] == ' ') add_group((pid_t)atol(line + 2));
    else if (line[0] == 'u' && line[1] == ' ') remove_group((pid_t)atol(line + 2));
    else if (line[0] == 'c' && line[1] == ' ') snprintf(cgroup_dir, sizeof cgroup_dir, "%s", line + 2);
}

static void pause_ms(long ms) {
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {}
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n < 0 ? -1 : 0;
}

// Removes a cgroup folder and the folders below it, deepest first (a cgroup folder holds
// only control files, which go with it). Returns 0 once it is gone.
static int remove_cgroup_tree(const char *folder) {
    DIR *dir = opendir(folder);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_type != DT_DIR || strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            char child[4200];
            snprintf(child, sizeof child, "%s/%s", folder, entry->d_name);
            remove_cgroup_tree(child);
        }
        closedir(dir);
    }
    return rmdir(folder) == 0 || errno == ENOENT ? 0 : -1;
}

// Sends SIGKILL to every process in the folder and the folders below it (what cgroup.kill
// does in one write, on kernels that have it).
static void kill_members(const char *folder) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cgroup.procs", folder);
    FILE *procs = fopen(path, "re");
    if (procs) {
        long pid;
        while (fscanf(procs, "%ld", &pid) == 1) kill((pid_t)pid, SIGKILL);
        fclose(procs);
    }
    DIR *dir = opendir(folder);
    if (!dir) return;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_type != DT_DIR || strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
        kill_members(path);
    }
    closedir(dir);
}

// Kills every process in the cgroup, its sub-cgroups included, then removes the folders,
// waiting (up to 2 s) for the killed processes to leave them.
static void kill_cgroup(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cgroup.kill", cgroup_dir);
    write_file(path, "1");
    for (int round = 0; round < 200; round++) {
        kill_members(cgroup_dir);
        if (remove_cgroup_tree(cgroup_dir) == 0) return;
        pause_ms(10);
    }
}

int main(void) {
    int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) signal(ignored[i], SIG_IGN);

    char buffer[8192];
    char line[4200];
    size_t length = 0;
    for (;;) {
        ssize_t n = read(0, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buffer[i] == '\n') {
                line[length] = 0;
                handle_line(line);
                length = 0;
            } else if (length < sizeof line - 1) {
                line[length++] = buffer[i];
            }
        }
    }
    for (size_t i = 0; i < group_count; i++) kill(-groups[i], SIGKILL);
    if (cgroup_dir[0]) kill_cgroup();
    return 0;
}

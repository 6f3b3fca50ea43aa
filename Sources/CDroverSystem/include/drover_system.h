#ifndef DROVER_SYSTEM_H
#define DROVER_SYSTEM_H

// System calls drover needs that Swift's Glibc module does not show (they need _GNU_SOURCE,
// which must not leak into headers that Swift also imports). Implemented in drover_system.c.

#include <sys/types.h>

// Marks every descriptor above 2 close-on-exec.
void drover_cloexec_from_3(void);

// syncfs(2) on the filesystem holding fd.
int drover_syncfs(int fd);

// Whether SIGCHLD is ignored.
int drover_sigchld_is_ignored(void);

// A pipe whose both ends are close-on-exec.
int drover_pipe(int fds[2]);

// Starts a program with posix_spawn (CLONE_VFORK in glibc: no copy of the caller's page
// tables). The child gets its own session and process group (pgid = pid), in/out/err as
// descriptors 0-2, the folder cwd (if not NULL), an empty signal mask and default signal
// dispositions. Returns 0 or an errno (exec failures included).
int drover_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                 const char *cwd, int in_fd, int out_fd, int err_fd);

// Whether pid has ended, without reaping it (its process group id stays reserved meanwhile).
int drover_has_exited(pid_t pid);

// Reaps pid: 1 with its exit code or terminating signal and its peak resident memory in
// KiB (its own, or that of a descendant it waited for, whichever is larger), 0 if it has
// not ended, -1 if it is not a child of ours.
int drover_reap(pid_t pid, int *code, int *signal, long *peak_rss_kib);

// Makes the calling process a child subreaper: orphaned descendants are re-parented to it
// instead of to init. 0 on success.
int drover_become_subreaper(void);

// The pid of some child that has ended, without reaping it; 0 when none has.
pid_t drover_peek_exited_child(void);

// The uid of the process at the other end of a connected Unix socket. 0 on success.
int drover_peer_uid(int fd, uid_t *uid);

// A connected Unix stream socket to path (close-on-exec), or -1 with errno set.
int drover_connect_unix(const char *path);

// O_PATH (a descriptor that names a folder without opening it for reading).
extern const int drover_o_path;

// openat2(2) confined beneath the folder dirfd: path may not leave it (no "..", no absolute
// path) nor pass through any symbolic link, its last component included (RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS). O_CLOEXEC is added to flags. A descriptor, or
// -1 with errno set (ENOSYS where the kernel has no openat2).
int drover_open_beneath(int dirfd, const char *path, int flags, mode_t mode);

// Hands the heap's free memory back to the kernel (glibc malloc_trim(0)): after start-up
// has parsed and dropped every task.json, or a clean forgot thousands of tasks, the freed
// pages would otherwise stay in the process's resident set. 1 if memory was released.
int drover_release_free_memory(void);

// The size of the terminal on fd (TIOCGWINSZ; ioctl is variadic, which Swift cannot call).
// 0 on success.
int drover_terminal_size(int fd, int *rows, int *columns);

#endif

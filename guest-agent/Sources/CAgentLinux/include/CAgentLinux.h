#ifndef KASA_CAGENTLINUX_H
#define KASA_CAGENTLINUX_H

// The few Linux calls the guest agent's container code cannot make from Swift: variadic
// functions (prctl, ioctl, syscall), calls glibc hides behind _GNU_SOURCE (unshare, setns,
// close_range), and kernel struct layouts (capget/capset). Every function returns what
// the underlying call returns (-1 with errno set on failure) unless noted.

#include <stdint.h>
#include <spawn.h>
#include <sys/types.h>

// Namespace flags for unshare/setns (linux/sched.h values).
#define KASA_CLONE_NEWNS     0x00020000
#define KASA_CLONE_NEWCGROUP 0x02000000
#define KASA_CLONE_NEWUTS    0x04000000
#define KASA_CLONE_NEWIPC    0x08000000
#define KASA_CLONE_NEWUSER   0x10000000
#define KASA_CLONE_NEWPID    0x20000000
#define KASA_CLONE_NEWNET    0x40000000

/// pipe2(fds, O_CLOEXEC).
int kasa_pipe_cloexec(int fds[2]);

int kasa_unshare(int flags);
int kasa_setns(int fd, int nstype);
int kasa_pivot_root(const char *new_root, const char *put_old);

// mount(2) flags (linux/mount.h values).
#define KASA_MS_RDONLY      0x00000001UL
#define KASA_MS_NOSUID      0x00000002UL
#define KASA_MS_NODEV       0x00000004UL
#define KASA_MS_NOEXEC      0x00000008UL
#define KASA_MS_SYNCHRONOUS 0x00000010UL
#define KASA_MS_REMOUNT     0x00000020UL
#define KASA_MS_MANDLOCK    0x00000040UL
#define KASA_MS_DIRSYNC     0x00000080UL
#define KASA_MS_NOATIME     0x00000400UL
#define KASA_MS_NODIRATIME  0x00000800UL
#define KASA_MS_BIND        0x00001000UL
#define KASA_MS_REC         0x00004000UL
#define KASA_MS_UNBINDABLE  0x00020000UL
#define KASA_MS_PRIVATE     0x00040000UL
#define KASA_MS_SLAVE       0x00080000UL
#define KASA_MS_SHARED      0x00100000UL
#define KASA_MS_RELATIME    0x00200000UL
#define KASA_MS_STRICTATIME 0x01000000UL
#define KASA_MNT_DETACH     0x00000002

int kasa_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
               const char *data);
int kasa_umount2(const char *target, int flags);
/// The MS_* flags of the mount holding `path` that a bind remount must keep
/// (nosuid, nodev, noexec, noatime, nodiratime, relatime, rdonly), or -1.
long kasa_mount_flags_of(const char *path);

/// bpf(2): `cmd` with the `size` bytes of `union bpf_attr` at `attr` (the caller lays them
/// out). Returns what the call returns: a descriptor for BPF_PROG_LOAD, 0 for attach.
long kasa_bpf(int cmd, void *attr, unsigned int size);

int kasa_mknod_char(const char *path, unsigned int mode, unsigned int major, unsigned int minor);
int kasa_sethostname(const char *name, size_t length);
int kasa_setgroups(size_t count, const uint32_t *gids);
int kasa_setresgid(uint32_t gid);
int kasa_setresuid(uint32_t uid);
/// setrlimit(2) by resource number (RLIMIT_* as in the kernel's generic ABI).
int kasa_setrlimit(int resource, uint64_t soft, uint64_t hard);
int kasa_getrlimit(int resource, uint64_t *soft, uint64_t *hard);

// prctl(2) and capabilities.
int kasa_set_no_new_privs(void);
int kasa_get_no_new_privs(void);
int kasa_set_keepcaps(int on);
int kasa_set_pdeathsig(int signal);
int kasa_set_child_subreaper(int on);
/// setpriority(PRIO_PROCESS, id, nice): on Linux `id` 0 is the calling thread only, a
/// thread's children inherit its value. 0, or -1 with errno.
int kasa_set_nice(int id, int nice);
int kasa_capbset_drop(int cap);
int kasa_capbset_read(int cap);
int kasa_cap_ambient_raise(int cap);
int kasa_cap_ambient_clear_all(void);
/// capget/capset with _LINUX_CAPABILITY_VERSION_3 (64-bit sets) for the calling thread.
int kasa_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);
int kasa_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);

/// ioctl(fd, TIOCSCTTY, 0): make the terminal on fd the controlling terminal.
int kasa_set_controlling_terminal(int fd);

/// Close every descriptor >= first (close_range, falling back to a loop over
/// /proc/self/fd's numbers up to the soft RLIMIT_NOFILE). Returns 0.
int kasa_close_from(int first);

/// posix_spawn_file_actions_addclosefrom_np where the C library has it (glibc 2.34+);
/// returns ENOSYS elsewhere (the spawned program then closes the rest itself).
int kasa_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int first);

/// Sets IFF_UP on the network interface `name` in the calling thread's network namespace
/// (SIOCGIFFLAGS/SIOCSIFFLAGS on an AF_INET datagram socket). 0, or -1 with errno.
int kasa_interface_up(const char *name);
/// 1 if the interface `name` is up, 0 if it is down, -1 with errno.
int kasa_interface_is_up(const char *name);

// The agent server's descriptor helpers (pty, accept4, window size).
// ioctl(fd, RNDRESEEDCRNG) on /dev/urandom: the kernel's CRNG takes a new key from its
// input pool now (where the bytes just written to the device were mixed in).
int kasa_reseed_crng(int fd);

#include "kasa_agent_io.h"

#endif

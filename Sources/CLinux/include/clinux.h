// Linux calls Swift's Glibc module does not expose (its module map omits sys/eventfd.h).
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>
#include <stddef.h>

// A non-blocking, close-on-exec eventfd, or -1 with errno set.
int clinux_eventfd(unsigned int initial);

// Fills `buffer` from the kernel's random pool; returns bytes written or -1 with errno set.
long clinux_getrandom(void *buffer, unsigned long length);

// memfd_create(name, MFD_CLOEXEC): anonymous memory with a descriptor (guest RAM, so a
// snapshot can find the pages ever written with SEEK_DATA). fd or -1 with errno set.
int clinux_memfd(const char *name);
// lseek's SEEK_DATA and SEEK_HOLE, which Swift's Glibc module does not export.
static const int CLINUX_SEEK_DATA = 3, CLINUX_SEEK_HOLE = 4;

// madvise's MADV_DONTDUMP (linux/mman.h), which Swift's Glibc module does not export.
static const int CLINUX_MADV_DONTDUMP = 16;

// prctl(PR_SET_PDEATHSIG): `signal` is sent to this process when the thread that
// started it exits (prctl is variadic, so Swift cannot call it directly). 0 or -1.
int clinux_set_parent_death_signal(int signal);
// prctl(PR_GET_PDEATHSIG): the armed signal, 0 for none, or -1 with errno set.
int clinux_parent_death_signal(void);

// For a process that is the init of its PID namespace, which no signal without a handler
// reaches (but SIGKILL from outside): SIGTERM, SIGINT, SIGHUP and SIGQUIT end it with
// _exit(128 + signal), as their default action would have. 0 or -1 with errno set.
int clinux_exit_on_termination_signals(void);

// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process
// (the containerd shim reaps what its VMM leaves). 0 or -1.
int clinux_become_subreaper(void);

// mallopt(M_TRIM_THRESHOLD, bytes) (malloc.h is not in Swift's Glibc module). 1 or 0.
int clinux_malloc_trim_threshold(int bytes);

// unshare(CLONE_NEWIPC | CLONE_NEWUTS): System V IPC and the host name of this process's
// own (glibc hides unshare behind _GNU_SOURCE). 0 or -1 with errno set.
int clinux_unshare_ipc_and_uts(void);

// kasa-vmm's mount jail (Confinement.MountJail), calls Swift's Glibc module lacks or
// hides: unshare(CLONE_NEWNS), pivot_root(2), and mount(2) with its flag constants.
// Each returns 0 or -1 with errno set.
int clinux_unshare_mount_namespace(void);
int clinux_pivot_root(const char *new_root, const char *put_old);
int clinux_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);
int clinux_umount_detached(const char *target);
static const unsigned long CLINUX_MS_RDONLY = 1, CLINUX_MS_NOSUID = 2, CLINUX_MS_NODEV = 4, CLINUX_MS_NOEXEC = 8;
static const unsigned long CLINUX_MS_REMOUNT = 32, CLINUX_MS_BIND = 4096, CLINUX_MS_REC = 16384;
static const unsigned long CLINUX_MS_SLAVE = 1UL << 19, CLINUX_MS_UNBINDABLE = 1UL << 17;

// prctl(PR_SET_NO_NEW_PRIVS, 1) for the calling thread and those it starts later (a seccomp
// filter may then be loaded without CAP_SYS_ADMIN). 0 or -1 with errno set.
int clinux_set_no_new_privs(void);

// capset for the calling thread only (Linux keeps capabilities per thread): effective and
// permitted become `keep` (a bit per CAP_* number; bits it does not hold stay clear) and
// inheritable and ambient are cleared. 0 or -1 with errno set.
int clinux_limit_thread_capabilities(uint64_t keep);
/// Makes the whole process run as `uid`/`gid` with no supplementary groups, keeping its
/// permitted capabilities and raising them into the calling thread's effective set (each
/// thread then keeps what its role needs). Re-arms the parent-death signal, which a
/// change of credentials clears. Call while the process has one thread. 0, or -1 with errno.
int clinux_become_user(uint32_t uid, uint32_t gid);
/// Sends `length` bytes on a Unix socket with `descriptor` attached (SCM_RIGHTS);
/// returns what send returns.
long clinux_send_with_descriptor(int socket, const void *bytes, unsigned long length, int descriptor);
/// Receives bytes and any descriptors attached (close-on-exec). At most `capacity` are
/// stored in `descriptors` and counted in `*count`; any beyond it are closed and
/// `*truncated` set, as when the kernel had to drop some. Returns what recvmsg returns.
long clinux_receive_with_descriptors(int socket, void *bytes, unsigned long length, int *descriptors, int capacity,
                                     int *count, int *truncated);

// TAP devices for virtio-net (linux/if_tun.h requests, which take a struct ifreq or an
// int by pointer; ioctl is variadic, so Swift cannot call it directly).
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR on the TAP `name` (created in the network namespace
// /dev/net/tun is opened in; empty name = the kernel picks "tapN"), non-blocking and
// close-on-exec. Writes the interface's name to `name_out` (IFNAMSIZ bytes). fd or -1.
int clinux_tap_open(const char *name, char name_out[16]);
// Checks that `fd` is a TAP opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (TUNGETIFF)
// and writes its name to `name_out`. 0, or -1 with errno (EINVAL: wrong mode or flags).
int clinux_tap_check(int fd, char name_out[16]);
// TUNSETVNETHDRSZ `size` and TUNSETOFFLOAD `offloads` (TUN_F_* bits; 0 = none: the host
// kernel finishes checksums and segmentation before a frame reaches the TAP). 0 or -1.
int clinux_tap_configure(int fd, int header_size, unsigned int offloads);
// TUNSETOFFLOAD alone: which offloads the TAP may use in frames it hands to us (the
// guest's negotiated receive offloads). TUN_F_* values.
int clinux_tap_set_offloads(int fd, unsigned int offloads);
// The TUN requests kasa-vmm's threads make after set-up (its seccomp filters name them).
extern const unsigned long CLINUX_TUNSETOFFLOAD, CLINUX_TUNSETVNETHDRSZ, CLINUX_TUNGETIFF;
static const unsigned int CLINUX_TUN_F_CSUM = 0x01, CLINUX_TUN_F_TSO4 = 0x02, CLINUX_TUN_F_TSO6 = 0x04, CLINUX_TUN_F_TSO_ECN = 0x08;
// The maximum name length for a network interface, with its NUL.
#define CLINUX_IFNAMSIZ 16

// The shared file system's host calls (SharedFileSystem) that glibc 2.36 does not wrap or
// declares only under _GNU_SOURCE. Each returns what the system call does (-1 and errno).
// openat2(2) with RESOLVE_* bits: how every guest-supplied name is resolved, beneath its
// parent's descriptor, never through a symbolic or magic link.
int clinux_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long mode,
                   unsigned long long resolve);
static const unsigned long long CLINUX_RESOLVE_NO_XDEV = 0x01, CLINUX_RESOLVE_NO_MAGICLINKS = 0x02,
    CLINUX_RESOLVE_NO_SYMLINKS = 0x04, CLINUX_RESOLVE_BENEATH = 0x08;
// getdents64(2) into `buffer`: bytes filled, 0 at the end, -1 and errno.
long clinux_getdents64(int fd, void *buffer, unsigned long size);
int clinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
int clinux_fallocate(int fd, int mode, long long offset, long long length);
// utimensat(2) with each time given as seconds and nanoseconds (UTIME_NOW / UTIME_OMIT in
// the nanoseconds field as the kernel defines them).
int clinux_utimensat(int dirfd, const char *path, long long atime_sec, long atime_nsec,
                     long long mtime_sec, long mtime_nsec, int flags);
// AT_EMPTY_PATH (fcntl.h declares it only under _GNU_SOURCE).
static const int CLINUX_AT_EMPTY_PATH = 0x1000;
// O_PATH (likewise): a descriptor that names a file without opening it for I/O.
static const int CLINUX_O_PATH = 010000000;
// Extended attributes by path (sys/xattr.h): the server names its own descriptors through
// /proc/self/fd. Byte counts, or -1 and errno.
long clinux_getxattr(const char *path, const char *name, void *value, unsigned long size);
long clinux_listxattr(const char *path, char *list, unsigned long size);
int clinux_setxattr(const char *path, const char *name, const void *value, unsigned long size, int flags);
int clinux_removexattr(const char *path, const char *name);
static const long CLINUX_UTIME_NOW = ((1l << 30) - 1l), CLINUX_UTIME_OMIT = ((1l << 30) - 2l);


// Starting a process in namespaces of its own (kasa-vmm's PID and network namespaces),
// which posix_spawn cannot: clone(CLONE_VFORK | namespaces) without CLONE_VM, then in the
// child only async-signal-safe calls before execve. `namespaces`: CLONE_NEW* flags.
// Actions run in order: kind CLINUX_SPAWN_DUP2 dup2(source, target); CLINUX_SPAWN_OPEN
// opens `path` with `flags` and `mode` at `target`.
enum { CLINUX_SPAWN_DUP2 = 0, CLINUX_SPAWN_OPEN = 1 };
struct clinux_spawn_action { int kind; int source; int target; const char *path; int flags; unsigned int mode; };
struct clinux_spawn_request {
    const char *path;
    char *const *argv;
    char *const *envp;
    int namespaces;
    // setpgid(0, 0) in the child when nonzero.
    int new_process_group;
    // prctl(PR_SET_PDEATHSIG) in the child before execve, while the spawning thread is
    // known to live (CLONE_VFORK suspends it until then); 0 for none.
    int parent_death_signal;
    // A cgroup's cgroup.procs: the child moves itself there before execve; NULL: stays.
    const char *cgroup_procs;
    const struct clinux_spawn_action *actions;
    int action_count;
};
static const int CLINUX_CLONE_NEWPID = 0x20000000, CLINUX_CLONE_NEWNET = 0x40000000;
// The child's pid, or -1 with errno set: the clone's failure, or what stopped the child
// before execve (it is reaped then). `failed_step` (may be NULL) names that step.
int clinux_spawn(const struct clinux_spawn_request *request, const char **failed_step);

// Guest memory a vCPU may be writing while the VMM reads it (a virtqueue's idx, flags,
// avail_event): each access is one load or store of the whole value, never a byte-wise
// copy that could pair the old value's low byte with the new value's high byte. Relaxed:
// the callers place their own fences. An address not aligned to the size (no ring field
// is) gets a plain copy.
static inline uint16_t clinux_load16(const void *address) {
    if (((uintptr_t)address & 1) == 0) return __atomic_load_n((const uint16_t *)address, __ATOMIC_RELAXED);
    uint16_t value; __builtin_memcpy(&value, address, 2); return value;
}
static inline uint32_t clinux_load32(const void *address) {
    if (((uintptr_t)address & 3) == 0) return __atomic_load_n((const uint32_t *)address, __ATOMIC_RELAXED);
    uint32_t value; __builtin_memcpy(&value, address, 4); return value;
}
static inline uint64_t clinux_load64(const void *address) {
    if (((uintptr_t)address & 7) == 0) return __atomic_load_n((const uint64_t *)address, __ATOMIC_RELAXED);
    uint64_t value; __builtin_memcpy(&value, address, 8); return value;
}
static inline void clinux_store16(void *address, uint16_t value) {
    if (((uintptr_t)address & 1) == 0) __atomic_store_n((uint16_t *)address, value, __ATOMIC_RELAXED);
    else __builtin_memcpy(address, &value, 2);
}
static inline void clinux_store32(void *address, uint32_t value) {
    if (((uintptr_t)address & 3) == 0) __atomic_store_n((uint32_t *)address, value, __ATOMIC_RELAXED);
    else __builtin_memcpy(address, &value, 4);
}
static inline void clinux_store64(void *address, uint64_t value) {
    if (((uintptr_t)address & 7) == 0) __atomic_store_n((uint64_t *)address, value, __ATOMIC_RELAXED);
    else __builtin_memcpy(address, &value, 8);
}

#endif

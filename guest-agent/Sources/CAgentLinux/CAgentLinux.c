#define _GNU_SOURCE
#include <linux/random.h>
#include "CAgentLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

int kasa_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int kasa_unshare(int flags) { return unshare(flags); }
int kasa_setns(int fd, int nstype) { return setns(fd, nstype); }
int kasa_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int kasa_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
               const char *data) {
    return mount(source, target, fstype, flags, data);
}
int kasa_umount2(const char *target, int flags) { return umount2(target, flags); }

long kasa_mount_flags_of(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) != 0) return -1;
    long flags = 0;
    if (st.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    if (st.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
#ifdef ST_RELATIME
    if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
#endif
    return flags;
}

long kasa_bpf(int cmd, void *attr, unsigned int size) { return syscall(SYS_bpf, cmd, attr, size); }

int kasa_mknod_char(const char *path, unsigned int mode, unsigned int major, unsigned int minor) {
    return mknod(path, S_IFCHR | (mode & 07777), makedev(major, minor));
}
int kasa_sethostname(const char *name, size_t length) { return sethostname(name, length); }
int kasa_setgroups(size_t count, const uint32_t *gids) {
    return setgroups(count, (const gid_t *)gids);
}
int kasa_setresgid(uint32_t gid) { return setresgid(gid, gid, gid); }
int kasa_setresuid(uint32_t uid) { return setresuid(uid, uid, uid); }

int kasa_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit limit = { .rlim_cur = (rlim_t)soft, .rlim_max = (rlim_t)hard };
    return setrlimit(resource, &limit);
}
int kasa_getrlimit(int resource, uint64_t *soft, uint64_t *hard) {
    struct rlimit limit;
    int rc = getrlimit(resource, &limit);
    if (rc == 0) { *soft = limit.rlim_cur; *hard = limit.rlim_max; }
    return rc;
}

int kasa_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int kasa_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }
int kasa_set_keepcaps(int on) { return prctl(PR_SET_KEEPCAPS, on ? 1 : 0, 0, 0, 0); }
int kasa_set_pdeathsig(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }
int kasa_set_nice(int id, int nice) { return setpriority(PRIO_PROCESS, (id_t)id, nice); }
int kasa_set_child_subreaper(int on) { return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0); }
int kasa_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }
int kasa_capbset_read(int cap) { return prctl(PR_CAPBSET_READ, cap, 0, 0, 0); }
int kasa_cap_ambient_raise(int cap) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0); }
int kasa_cap_ambient_clear_all(void) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); }

int kasa_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {{0}};
    int rc = (int)syscall(SYS_capget, &header, data);
    if (rc == 0) {
        *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
        *permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
        *inheritable = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
    }
    return rc;
}

int kasa_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)inheritable;
    data[1].inheritable = (uint32_t)(inheritable >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

int kasa_set_controlling_terminal(int fd) { return ioctl(fd, TIOCSCTTY, 0); }

int kasa_close_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned int)first, ~0U, 0) == 0) return 0;
#endif
    struct rlimit limit;
    long max = 1024;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) max = (long)limit.rlim_cur;
    if (max > 65536) max = 65536;
    for (long fd = first; fd < max; fd++) close((int)fd);
    return 0;
}

int kasa_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int first) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(actions, first);
#else
    (void)actions; (void)first;
    return ENOSYS;
#endif
}

/// SIOCGIFFLAGS for `name` into `request` on a new AF_INET datagram socket; returns the
/// socket (the caller closes it) or -1 with errno.
static int interface_flags(const char *name, struct ifreq *request) {
    if (strlen(name) >= IFNAMSIZ) { errno = EINVAL; return -1; }
    memset(request, 0, sizeof *request);
    strncpy(request->ifr_name, name, IFNAMSIZ - 1);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (ioctl(fd, SIOCGIFFLAGS, request) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int kasa_interface_up(const char *name) {
    struct ifreq request;
    int fd = interface_flags(name, &request);
    if (fd < 0) return -1;
    request.ifr_flags |= IFF_UP;
    int result = ioctl(fd, SIOCSIFFLAGS, &request);
    int saved = errno;
    close(fd);
    errno = saved;
    return result == 0 ? 0 : -1;
}

int kasa_interface_is_up(const char *name) {
    struct ifreq request;
    int fd = interface_flags(name, &request);
    if (fd < 0) return -1;
    close(fd);
    return (request.ifr_flags & IFF_UP) ? 1 : 0;
}

int kasa_reseed_crng(int fd) { return ioctl(fd, RNDRESEEDCRNG); }

#define _GNU_SOURCE
#include "clinux.h"
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <malloc.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <linux/if_tun.h>

int clinux_eventfd(unsigned int initial) { return eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK); }

long clinux_getrandom(void *buffer, unsigned long length) { return getrandom(buffer, length, 0); }

int clinux_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }
int clinux_parent_death_signal(void) {
    int signal = 0;
    if (prctl(PR_GET_PDEATHSIG, (unsigned long)&signal, 0, 0, 0) != 0) return -1;
    return signal;
}

static void exit_for_signal(int signal) { _exit(128 + signal); }

int clinux_exit_on_termination_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = exit_for_signal;
    sigfillset(&action.sa_mask);
    const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
    for (unsigned index = 0; index < sizeof signals / sizeof signals[0]; index++) {
        if (sigaction(signals[index], &action, NULL) != 0) return -1;
    }
    return 0;
}

int clinux_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0, 0, 0); }

int clinux_tap_open(const char *name, char name_out[16]) {
    if (strlen(name) >= IFNAMSIZ) { errno = EINVAL; return -1; }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &request) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    memcpy(name_out, request.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = 0;
    return fd;
}

int clinux_tap_check(int fd, char name_out[16]) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (ioctl(fd, TUNGETIFF, &request) != 0) return -1;
    int wanted = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if ((request.ifr_flags & (IFF_TAP | IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)) != wanted) { errno = EINVAL; return -1; }
    memcpy(name_out, request.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = 0;
    return 0;
}

int clinux_tap_configure(int fd, int header_size, unsigned int offloads) {
    if (ioctl(fd, TUNSETVNETHDRSZ, &header_size) != 0) return -1;
    return clinux_tap_set_offloads(fd, offloads);
}

int clinux_tap_set_offloads(int fd, unsigned int offloads) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) == 0 ? 0 : -1;
}

int clinux_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int clinux_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long mode,
                   unsigned long long resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

long clinux_getdents64(int fd, void *buffer, unsigned long size) { return syscall(SYS_getdents64, fd, buffer, size); }

int clinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

int clinux_fallocate(int fd, int mode, long long offset, long long length) { return fallocate(fd, mode, offset, length); }

int clinux_utimensat(int dirfd, const char *path, long long atime_sec, long atime_nsec,
                     long long mtime_sec, long mtime_nsec, int flags) {
    struct timespec times[2] = {{.tv_sec = atime_sec, .tv_nsec = atime_nsec}, {.tv_sec = mtime_sec, .tv_nsec = mtime_nsec}};
    return utimensat(dirfd, path, times, flags);
}

long clinux_getxattr(const char *path, const char *name, void *value, unsigned long size) { return getxattr(path, name, value, size); }
long clinux_listxattr(const char *path, char *list, unsigned long size) { return listxattr(path, list, size); }
int clinux_setxattr(const char *path, const char *name, const void *value, unsigned long size, int flags) {
    return setxattr(path, name, value, size, flags);
}
int clinux_removexattr(const char *path, const char *name) { return removexattr(path, name); }

const unsigned long CLINUX_TUNSETOFFLOAD = TUNSETOFFLOAD, CLINUX_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ, CLINUX_TUNGETIFF = TUNGETIFF;

int clinux_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

int clinux_limit_thread_capabilities(uint64_t keep) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    uint64_t held = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    uint64_t kept = held & keep;
    for (int i = 0; i < 2; i++) {
        data[i].effective = data[i].permitted = (uint32_t)(kept >> (32 * i));
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    // Ambient capabilities only matter across execve, which no kasa-vmm thread may make;
    // cleared all the same (EINVAL: a kernel without them).
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    return 0;
}

int clinux_become_user(uint32_t uid, uint32_t gid) {
    int death = 0;
    if (prctl(PR_GET_PDEATHSIG, (unsigned long)&death, 0, 0, 0) != 0) return -1;
    if (setgroups(0, NULL) != 0) return -1;
    // Without KEEPCAPS, leaving uid 0 would clear the permitted set: set-up (opening
    // root's files, binding sockets in root's directories) still needs it on this thread.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return -1;
    if (setresgid(gid, gid, gid) != 0) return -1;
    if (setresuid(uid, uid, uid) != 0) return -1;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return -1;
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    for (int i = 0; i < 2; i++) data[i].effective = data[i].permitted;
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    // The ids' change cleared the parent-death signal. A parent that died in the few
    // instructions since goes unnoticed here (as the init of its own PID namespace this
    // process cannot see it): the runtime's pid file lets `delete` stop this VMM then.
    if (death != 0 && prctl(PR_SET_PDEATHSIG, (unsigned long)death, 0, 0, 0) != 0) return -1;
    return 0;
}

long clinux_send_with_descriptor(int socket, const void *bytes, unsigned long length, int descriptor) {
    struct iovec vector = {.iov_base = (void *)bytes, .iov_len = length};
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
    return sendmsg(socket, &message, MSG_NOSIGNAL);
}

long clinux_receive_with_descriptors(int socket, void *bytes, unsigned long length, int *descriptors, int capacity,
                                     int *count, int *truncated) {
    struct iovec vector = {.iov_base = bytes, .iov_len = length};
    union { char buffer[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr align; } control;
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
    *count = 0;
    *truncated = 0;
    ssize_t received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    if (received < 0) return received;
    if (message.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t carried = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < carried; i++) {
            int descriptor;
            memcpy(&descriptor, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (*count < capacity) {
                descriptors[(*count)++] = descriptor;
            } else {
                close(descriptor);
                *truncated = 1;
            }
        }
    }
    return received;
}

int clinux_malloc_trim_threshold(int bytes) { return mallopt(M_TRIM_THRESHOLD, bytes); }

int clinux_unshare_ipc_and_uts(void) {
    extern int unshare(int flags);
    return unshare(0x08000000 /* CLONE_NEWIPC */ | 0x04000000 /* CLONE_NEWUTS */);
}

int clinux_unshare_mount_namespace(void) {
    extern int unshare(int flags);
    return unshare(0x00020000 /* CLONE_NEWNS */);
}

int clinux_pivot_root(const char *new_root, const char *put_old) { return (int)syscall(SYS_pivot_root, new_root, put_old); }

int clinux_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data);
}

int clinux_umount_detached(const char *target) { return umount2(target, MNT_DETACH); }

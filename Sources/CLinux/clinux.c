#define _GNU_SOURCE
#include "clinux.h"
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
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

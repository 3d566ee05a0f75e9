#define _GNU_SOURCE
#include "kasa_agent_io.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <errno.h>
#include <string.h>

int kasa_open_pty(int *master, int *slave) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0) { close(m); return -1; }
    char name[128];
    if (ptsname_r(m, name, sizeof name) != 0) { close(m); return -1; }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { close(m); return -1; }
    *master = m;
    *slave = s;
    return 0;
}

int kasa_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int kasa_set_window_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size = { .ws_row = rows, .ws_col = columns };
    return ioctl(fd, TIOCSWINSZ, &size);
}

int kasa_is_ram_filesystem(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return 0;
    return info.f_type == RAMFS_MAGIC || info.f_type == TMPFS_MAGIC;
}

#define KASA_MAX_PASSED_DESCRIPTORS 3

long kasa_send_with_descriptors(int socket, const void *bytes, size_t length, const int *descriptors, int count) {
    if (length == 0 || count < 0 || count > KASA_MAX_PASSED_DESCRIPTORS) { errno = EINVAL; return -1; }
    struct iovec vector = { .iov_base = (void *)bytes, .iov_len = length };
    union { char space[CMSG_SPACE(sizeof(int) * KASA_MAX_PASSED_DESCRIPTORS)]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1 };
    if (count > 0) {
        message.msg_control = control.space;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), descriptors, sizeof(int) * (size_t)count);
    }
    ssize_t sent;
    do { sent = sendmsg(socket, &message, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    return sent;
}

long kasa_receive_with_descriptors(int socket, void *buffer, size_t length, int *descriptors, int *count) {
    *count = 0;
    struct iovec vector = { .iov_base = buffer, .iov_len = length };
    union { char space[CMSG_SPACE(sizeof(int) * KASA_MAX_PASSED_DESCRIPTORS)]; struct cmsghdr align; } control;
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1,
                              .msg_control = control.space, .msg_controllen = sizeof control.space };
    ssize_t received;
    do { received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC); } while (received < 0 && errno == EINTR);
    if (received < 0) return -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        // The kernel checked cmsg_len against what fit in msg_control.
        size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
            if (*count < KASA_MAX_PASSED_DESCRIPTORS) descriptors[(*count)++] = fd; else close(fd);
        }
    }
    if (message.msg_flags & MSG_CTRUNC) {
        for (int i = 0; i < *count; i++) close(descriptors[i]);
        *count = 0;
        errno = EMSGSIZE;
        return -1;
    }
    return received;
}

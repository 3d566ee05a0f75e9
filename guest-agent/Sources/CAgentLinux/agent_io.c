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

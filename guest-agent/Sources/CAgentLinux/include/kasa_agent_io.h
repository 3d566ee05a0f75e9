// Descriptor calls the agent's server and process plumbing needs that Swift's Glibc
// module leaves out (pty allocation, accept4, pipe2 are behind _GNU_SOURCE or absent).
#ifndef KASA_AGENT_IO_H
#define KASA_AGENT_IO_H

#include <stddef.h>

// Opens a pty pair (both ends close-on-exec); 0 on success, -1 with errno set.
int kasa_open_pty(int *master, int *slave);
// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int kasa_accept_cloexec(int fd);
// Sets the terminal size of a pty master.
int kasa_set_window_size(int fd, unsigned short rows, unsigned short columns);

// 1 when `path` is on ramfs or tmpfs (the initramfs), 0 otherwise or on error.
int kasa_is_ram_filesystem(const char *path);

#endif

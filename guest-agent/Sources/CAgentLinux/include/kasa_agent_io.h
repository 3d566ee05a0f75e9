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

// Sends `length` bytes (at least 1) with `count` descriptors (at most 3) as SCM_RIGHTS in
// one sendmsg (MSG_NOSIGNAL). Returns the bytes sent, or -1 with errno set.
long kasa_send_with_descriptors(int socket, const void *bytes, size_t length, const int *descriptors, int count);
// Receives into `buffer` with up to 3 descriptors (MSG_CMSG_CLOEXEC); `*count` is set to
// how many arrived. Returns the bytes received (0 at EOF), or -1 with errno set; a
// message whose descriptors did not fit (MSG_CTRUNC) is -1 with EMSGSIZE, and any that
// did arrive are closed.
long kasa_receive_with_descriptors(int socket, void *buffer, size_t length, int *descriptors, int *count);

#endif

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

// prctl(PR_SET_PDEATHSIG): `signal` is sent to this process when the thread that
// started it exits (prctl is variadic, so Swift cannot call it directly). 0 or -1.
int clinux_set_parent_death_signal(int signal);

// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process
// (the containerd shim reaps what its VMM leaves). 0 or -1.
int clinux_become_subreaper(void);

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
static const unsigned int CLINUX_TUN_F_CSUM = 0x01, CLINUX_TUN_F_TSO4 = 0x02, CLINUX_TUN_F_TSO6 = 0x04, CLINUX_TUN_F_TSO_ECN = 0x08;
// The maximum name length for a network interface, with its NUL.
#define CLINUX_IFNAMSIZ 16

#endif

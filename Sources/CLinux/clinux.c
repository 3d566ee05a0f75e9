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

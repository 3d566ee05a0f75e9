// Linux calls Swift's Glibc module does not expose (its module map omits sys/eventfd.h).
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>
#include <stddef.h>

// A non-blocking, close-on-exec eventfd, or -1 with errno set.
int clinux_eventfd(unsigned int initial);

// Fills `buffer` from the kernel's random pool; returns bytes written or -1 with errno set.
long clinux_getrandom(void *buffer, unsigned long length);

// prctl(PR_SET_PDEATHSIG): `signal` is sent to this process when the thread that
// started it exits (prctl is variadic, so Swift cannot call it directly). 0 or -1.
int clinux_set_parent_death_signal(int signal);

// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process
// (the containerd shim reaps what its VMM leaves). 0 or -1.
int clinux_become_subreaper(void);

#endif

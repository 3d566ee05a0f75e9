// Linux calls Swift's Glibc module does not expose (its module map omits sys/eventfd.h).
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>
#include <stddef.h>

// open(2)'s O_DIRECT, which Glibc only declares under _GNU_SOURCE (x86-64 value).
static const int CLINUX_O_DIRECT = 040000;

// A non-blocking, close-on-exec eventfd, or -1 with errno set.
int clinux_eventfd(unsigned int initial);

// Fills `buffer` from the kernel's random pool; returns bytes written or -1 with errno set.
long clinux_getrandom(void *buffer, unsigned long length);

#endif

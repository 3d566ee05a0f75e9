// Linux calls Swift's Glibc module does not expose (its module map omits sys/eventfd.h).
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>

// A non-blocking, close-on-exec eventfd, or -1 with errno set.
int clinux_eventfd(unsigned int initial);

#endif

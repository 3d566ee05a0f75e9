#include "clinux.h"
#include <sys/eventfd.h>
#include <sys/random.h>

int clinux_eventfd(unsigned int initial) { return eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK); }

long clinux_getrandom(void *buffer, unsigned long length) { return getrandom(buffer, length, 0); }

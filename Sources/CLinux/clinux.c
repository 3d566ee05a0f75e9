#include "clinux.h"
#include <sys/eventfd.h>

int clinux_eventfd(unsigned int initial) { return eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK); }

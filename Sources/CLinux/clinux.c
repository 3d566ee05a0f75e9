#include "clinux.h"
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/prctl.h>

int clinux_eventfd(unsigned int initial) { return eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK); }

long clinux_getrandom(void *buffer, unsigned long length) { return getrandom(buffer, length, 0); }

int clinux_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }
int clinux_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0, 0, 0); }

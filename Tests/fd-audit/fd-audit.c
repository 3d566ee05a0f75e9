// A close(2) audit preloaded into every process of a test run (LD_PRELOAD): the test
// process, and the shims, VMMs and runtimes it starts. A close that fails with EBADF means
// the caller closed a number it did not hold: a second close of one descriptor, most
// often. Usually that second close finds the number free; when another thread opened a
// file under it in between, it closes that file behind its owner's back, and the owner
// goes on using a number that soon names yet another file (issue 15, fault 2: an event
// loop that still watched such a number read 8 bytes from every write to a pipe opened
// under it). Each EBADF close is written to $KASA_FD_AUDIT_LOG with a backtrace;
// scripts/fd-audit.sh fails the run on those of Kasa's own programs.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static int (*next_close)(int);
static int log_descriptor = -1;
static int reports;
static char program[256];

__attribute__((constructor)) static void start_audit(void) {
    next_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    // The first backtrace loads the unwinder: done now, before a seccomp filter (kasa-vmm
    // installs one) could forbid the open and mmap that takes.
    void *frames[2];
    backtrace(frames, 2);
    ssize_t length = readlink("/proc/self/exe", program, sizeof program - 1);
    if (length > 0) program[length] = 0;
    const char *path = getenv("KASA_FD_AUDIT_LOG");
    if (!path) return;
    int opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (opened < 0) return;
    // Far above the numbers the program itself gets (the lowest free ones), so the audit
    // shifts none of them.
    log_descriptor = fcntl(opened, F_DUPFD_CLOEXEC, 900);
    next_close(opened);
}

static void report(int descriptor) {
    if (log_descriptor < 0 || reports >= 50) return;
    reports++;
    char line[400];
    int length = snprintf(line, sizeof line, "=== close of a descriptor not open: fd %d, pid %d, thread %ld, %s\n",
                          descriptor, getpid(), (long)syscall(SYS_gettid), program);
    if (length > 0) (void)!write(log_descriptor, line, (size_t)length);
    void *frames[32];
    backtrace_symbols_fd(frames, backtrace(frames, 32), log_descriptor);
}

int close(int descriptor) {
    if (!next_close) next_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (descriptor == log_descriptor && descriptor >= 0) {
        // The program closed the audit's own descriptor: a number it never opened.
        report(descriptor);
        errno = EBADF;
        return -1;
    }
    int result = next_close(descriptor);
    if (result < 0 && errno == EBADF && descriptor >= 0) {
        report(descriptor);
        errno = EBADF;
    }
    return result;
}

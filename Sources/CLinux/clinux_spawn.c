#define _GNU_SOURCE
#include "clinux.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

// What the child tells the parent through the report pipe when it cannot exec.
struct spawn_report { int error; int step; };

static const char *const step_names[] = {
    "execve", "prctl(PR_SET_PDEATHSIG)", "setpgid", "joining the cgroup", "dup2", "open", "sigprocmask",
};

// Runs in the child of clone (a copy of the parent's memory; its other threads do not
// exist here, so only async-signal-safe calls). Returns only on failure.
static void spawn_child(const struct clinux_spawn_request *request, int report) {
    int step = 0;
    // Default dispositions (an ignored signal stays ignored across execve), mask cleared last.
    struct sigaction standard;
    memset(&standard, 0, sizeof standard);
    standard.sa_handler = SIG_DFL;
    for (int number = 1; number < NSIG; number++) {
        if (number != SIGKILL && number != SIGSTOP) (void)sigaction(number, &standard, NULL);
    }
    if (request->parent_death_signal != 0
        && prctl(PR_SET_PDEATHSIG, (unsigned long)request->parent_death_signal, 0, 0, 0) != 0) { step = 1; goto failed; }
    if (request->new_process_group && setpgid(0, 0) != 0) { step = 2; goto failed; }
    if (request->cgroup_procs != NULL) {
        int procs = open(request->cgroup_procs, O_WRONLY | O_CLOEXEC);
        if (procs < 0 || write(procs, "0", 1) != 1) { step = 3; goto failed; }
        close(procs);
    }
    for (int index = 0; index < request->action_count; index++) {
        const struct clinux_spawn_action *action = &request->actions[index];
        if (action->kind == CLINUX_SPAWN_DUP2) {
            if (action->source == action->target) {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if (fcntl(action->source, F_SETFD, 0) != 0) { step = 4; goto failed; }
            } else if (dup2(action->source, action->target) < 0) { step = 4; goto failed; }
        } else {
            int opened = open(action->path, action->flags, action->mode);
            if (opened < 0) { step = 5; goto failed; }
            if (opened != action->target) {
                if (dup2(opened, action->target) < 0) { step = 5; goto failed; }
                close(opened);
            }
        }
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) { step = 6; goto failed; }
    execve(request->path, request->argv, request->envp);
failed:;
    struct spawn_report message = { errno, step };
    (void)write(report, &message, sizeof message);
}

int clinux_spawn(const struct clinux_spawn_request *request, const char **failed_step) {
    if (failed_step != NULL) *failed_step = "clone";
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    // CLONE_VFORK: this thread waits until the child has exec'd or exited, so the child's
    // parent-death signal is armed while its parent is certainly alive. No CLONE_VM: the
    // child works on a copy of memory, as after fork.
    long child = syscall(SYS_clone, (unsigned long)(CLONE_VFORK | SIGCHLD | request->namespaces), 0UL, NULL, NULL, 0UL);
    if (child == 0) {
        close(report[0]);
        spawn_child(request, report[1]);
        _exit(127);
    }
    int saved = errno;
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        errno = saved;
        return -1;
    }
    struct spawn_report message;
    ssize_t got;
    do { got = read(report[0], &message, sizeof message); } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof message) {
        int status;
        while (waitpid((pid_t)child, &status, 0) < 0 && errno == EINTR) {}
        if (failed_step != NULL && message.step >= 0 && message.step < (int)(sizeof step_names / sizeof step_names[0])) {
            *failed_step = step_names[message.step];
        }
        errno = message.error;
        return -1;
    }
    if (failed_step != NULL) *failed_step = NULL;
    return (int)child;
}

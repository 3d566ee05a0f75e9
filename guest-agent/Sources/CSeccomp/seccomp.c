// The container seccomp filter through Debian's libseccomp (linked statically into the
// static agent): it knows every architecture's syscall table and compiles the
// argument comparisons to BPF. See include/kasa_seccomp.h.
#define _GNU_SOURCE  // REG_RAX in <ucontext.h>, for the SIGSYS reporter
#include "kasa_seccomp.h"

#include <errno.h>
#include <seccomp.h>
#include <string.h>

int kasa_seccomp_action(const char *name, int has_errno, uint32_t errno_ret, uint32_t *action) {
    if (strcmp(name, "SCMP_ACT_ALLOW") == 0) *action = SCMP_ACT_ALLOW;
    else if (strcmp(name, "SCMP_ACT_ERRNO") == 0) *action = SCMP_ACT_ERRNO(has_errno ? errno_ret : EPERM);
    else if (strcmp(name, "SCMP_ACT_KILL") == 0 || strcmp(name, "SCMP_ACT_KILL_THREAD") == 0) *action = SCMP_ACT_KILL_THREAD;
    else if (strcmp(name, "SCMP_ACT_KILL_PROCESS") == 0) *action = SCMP_ACT_KILL_PROCESS;
    else if (strcmp(name, "SCMP_ACT_TRAP") == 0) *action = SCMP_ACT_TRAP;
    else if (strcmp(name, "SCMP_ACT_TRACE") == 0) *action = SCMP_ACT_TRACE(has_errno ? errno_ret : 0);
    else if (strcmp(name, "SCMP_ACT_LOG") == 0) *action = SCMP_ACT_LOG;
    else return -EINVAL;
    return 0;
}

void *kasa_seccomp_new(uint32_t default_action) {
    scmp_filter_ctx filter = seccomp_init(default_action);
    if (filter == NULL) return NULL;
    if (seccomp_attr_set(filter, SCMP_FLTATR_CTL_NNP, 0) != 0) {
        seccomp_release(filter);
        return NULL;
    }
    return filter;
}

void kasa_seccomp_release(void *filter) { seccomp_release(filter); }

int kasa_seccomp_add_arch(void *filter, const char *name) {
    static const struct { const char *oci; uint32_t token; } arches[] = {
        {"SCMP_ARCH_X86", SCMP_ARCH_X86}, {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
        {"SCMP_ARCH_X32", SCMP_ARCH_X32}, {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
        {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64}, {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS},
        {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64}, {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
        {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL}, {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
        {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32}, {"SCMP_ARCH_PPC", SCMP_ARCH_PPC},
        {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64}, {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE},
        {"SCMP_ARCH_S390", SCMP_ARCH_S390}, {"SCMP_ARCH_S390X", SCMP_ARCH_S390X},
        {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64},
    };
    for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++) {
        if (strcmp(name, arches[i].oci) != 0) continue;
        int result = seccomp_arch_add(filter, arches[i].token);
        // The native architecture is in every new filter already.
        return result == -EEXIST ? 0 : result;
    }
    return -EINVAL;
}

int kasa_seccomp_set_flag(void *filter, const char *name) {
    if (strcmp(name, "SECCOMP_FILTER_FLAG_LOG") == 0) return seccomp_attr_set(filter, SCMP_FLTATR_CTL_LOG, 1);
    if (strcmp(name, "SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 0) return seccomp_attr_set(filter, SCMP_FLTATR_CTL_SSB, 1);
    if (strcmp(name, "SECCOMP_FILTER_FLAG_TSYNC") == 0) return seccomp_attr_set(filter, SCMP_FLTATR_CTL_TSYNC, 1);
    return -EINVAL;
}

int kasa_seccomp_syscall(const char *name) {
    int number = seccomp_syscall_resolve_name(name);
    return number == __NR_SCMP_ERROR ? -1 : number;
}

int kasa_seccomp_add_rule(void *filter, uint32_t action, int number,
                          const struct kasa_seccomp_condition *conditions, unsigned count) {
    struct scmp_arg_cmp comparisons[6];
    if (count > 6) return -EINVAL;
    for (unsigned i = 0; i < count; i++) {
        if (conditions[i].index > 5 || conditions[i].op < SCMP_CMP_NE || conditions[i].op > SCMP_CMP_MASKED_EQ) return -EINVAL;
        comparisons[i].arg = conditions[i].index;
        comparisons[i].op = (enum scmp_compare)conditions[i].op;
        comparisons[i].datum_a = conditions[i].value;
        comparisons[i].datum_b = conditions[i].value_two;
    }
    return seccomp_rule_add_array(filter, action, number, count, comparisons);
}

int kasa_seccomp_load(void *filter) { return seccomp_load(filter); }

// --- Violation reports (kasa-vmm --seccomp=log) ---------------------------------------
// The SIGSYS handler may only make async-signal-safe calls, and every call it makes is
// itself filtered: it writes to stderr (which every kasa-vmm thread may) and reads only
// what was prepared before the filter went in (the name table, the thread's label).

#include <signal.h>
#include <ucontext.h>
#include <unistd.h>
#include <stdlib.h>

#define KASA_SECCOMP_NAMED_SYSCALLS 512
static const char *syscall_names[KASA_SECCOMP_NAMED_SYSCALLS];
static __thread char thread_label[32];

static size_t append(char *line, size_t used, size_t capacity, const char *text) {
    while (*text != '\0' && used + 1 < capacity) line[used++] = *text++;
    return used;
}

static size_t append_number(char *line, size_t used, size_t capacity, long value) {
    char digits[24];
    size_t count = 0;
    unsigned long magnitude = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do { digits[count++] = (char)('0' + magnitude % 10); magnitude /= 10; } while (magnitude != 0 && count < sizeof(digits));
    if (value < 0 && used + 1 < capacity) line[used++] = '-';
    while (count > 0 && used + 1 < capacity) line[used++] = digits[--count];
    return used;
}

static void report_violation(int signal, siginfo_t *info, void *context) {
    (void)signal;
    int saved = errno;
    char line[256];
    size_t used = 0;
    int number = info->si_syscall;
    used = append(line, used, sizeof(line), "kasa-vmm: seccomp: thread ");
    used = append(line, used, sizeof(line), thread_label[0] != '\0' ? thread_label : "(unconfined)");
    used = append(line, used, sizeof(line), " made system call ");
    const char *name = number >= 0 && number < KASA_SECCOMP_NAMED_SYSCALLS ? syscall_names[number] : NULL;
    used = append(line, used, sizeof(line), name != NULL ? name : "(unnamed)");
    used = append(line, used, sizeof(line), " (");
    used = append_number(line, used, sizeof(line), number);
    used = append(line, used, sizeof(line), "), which its filter does not allow: it fails with ENOSYS (--seccomp=log; the default kills the VMM)\n");
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
#if defined(__x86_64__)
    // The call did not run; make it return -ENOSYS instead of its own number.
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#else
    (void)context;
#endif
    errno = saved;
}

int kasa_seccomp_report_violations(void) {
    for (int number = 0; number < KASA_SECCOMP_NAMED_SYSCALLS; number++) {
        if (syscall_names[number] == NULL) syscall_names[number] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = report_violation;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGSYS, &action, NULL) == 0 ? 0 : -errno;
}

void kasa_seccomp_label_thread(const char *label) {
    size_t used = append(thread_label, 0, sizeof(thread_label), label);
    thread_label[used] = '\0';
}

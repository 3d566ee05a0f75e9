#ifndef KASA_SECCOMP_H
#define KASA_SECCOMP_H

#include <stdint.h>

/* A container's seccomp filter, built with libseccomp from the OCI profile's parts.
   Every function returns 0 or a negative errno, unless it says otherwise. */

/* One OCI argument condition: index, value, valueTwo and op (SCMP_CMP_* number, 1-7). */
struct kasa_seccomp_condition {
    uint32_t index;
    uint32_t op;
    uint64_t value;
    uint64_t value_two;
};

/* The libseccomp action for an OCI action name ("SCMP_ACT_ERRNO"...), with `errno_ret`
   for ERRNO and TRACE (has_errno 0: EPERM for ERRNO, 0 for TRACE). -EINVAL: unknown or
   unsupported (SCMP_ACT_NOTIFY: there is no listener in the guest). */
int kasa_seccomp_action(const char *name, int has_errno, uint32_t errno_ret, uint32_t *action);

/* A new filter with `default_action`; NULL on failure. libseccomp's own no_new_privs on
   load is turned off: the spec's noNewPrivileges decides it. */
void *kasa_seccomp_new(uint32_t default_action);
void kasa_seccomp_release(void *filter);

/* Adds an architecture by OCI name ("SCMP_ARCH_X86_64"). -EINVAL: unknown name. */
int kasa_seccomp_add_arch(void *filter, const char *name);

/* A flag by OCI name ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
   "SECCOMP_FILTER_FLAG_TSYNC"). -EINVAL: unknown. */
int kasa_seccomp_set_flag(void *filter, const char *name);

/* The syscall number for a name on the native architecture, or -1 if it has none here. */
int kasa_seccomp_syscall(const char *name);

/* One rule: `action` when syscall `number` is made and every condition holds. */
int kasa_seccomp_add_rule(void *filter, uint32_t action, int number,
                          const struct kasa_seccomp_condition *conditions, unsigned count);

/* Installs the filter in this thread's process. */
int kasa_seccomp_load(void *filter);

/* kasa-vmm's development mode: filters built with SCMP_ACT_TRAP as their default send
   SIGSYS on a call they do not allow; this installs a handler that writes the call's name,
   number and the calling thread's label to stderr and makes the call fail with ENOSYS.
   Returns 0 or a negative errno. */
int kasa_seccomp_report_violations(void);

/* The calling thread's name in violation reports (at most 31 bytes are kept). */
void kasa_seccomp_label_thread(const char *label);

#endif

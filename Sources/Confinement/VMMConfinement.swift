import CLinux
import CSeccomp
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// kasa-vmm's confinement after set-up: each thread drops the capabilities its role does
/// not need and loads its role's seccomp filter (`VMMSyscallPolicy`) before its own work,
/// so no vCPU runs a guest instruction unfiltered. Set-up itself (opening /dev/kvm, the
/// kernel, disks, TAPs, sockets) runs before, unfiltered.
public enum VMMConfinement {
    /// Sets no_new_privs for the process (every thread started later inherits it; seccomp
    /// needs it to load a filter without CAP_SYS_ADMIN), prepares `--seccomp=log`'s reports
    /// and has every `JoinableThread` started from now on confine itself by its name. Call
    /// first, before any thread starts. A thread that cannot be confined (an unknown name,
    /// a filter the kernel refuses) ends the process: kasa-vmm never runs a guest half-confined.
    public static func prepareProcess(mode: SeccompMode) throws {
        guard mode != .off else { return }
        try forbidNewPrivileges()
        if mode == .log { try reportViolations() }
        try leaveSharedNamespaces()
        // A crashing VMM writes no core file (guest memory is also marked MADV_DONTDUMP).
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore) == 0 else {
            throw SeccompError("setrlimit(RLIMIT_CORE, 0)", -errno)
        }
        // glibc's free() may give a thread arena's top back by shrinking the heap, and the
        // first time it does it reads /proc/sys/vm/overcommit_memory: an open no filtered
        // thread may make. Past this threshold (more than any thread heap holds) it never
        // shrinks one; freed memory stays with the arena for reuse (madvise still applies).
        _ = clinux_malloc_trim_threshold(Int32.max)
        JoinableThread.setStartHook { name in
            guard let role = ThreadRole(threadName: name) else {
                abandon("thread \(name) has no seccomp role (ThreadRole): refusing to run it unconfined")
            }
            do {
                try confineCurrentThread(as: role, label: name, mode: mode)
            } catch {
                abandon("thread \(name): \(error)")
            }
        }
    }

    /// Confines the calling thread as `role`: capabilities first (the filter does not allow
    /// capset), then the filter. `label` names the thread in `--seccomp=log` reports.
    public static func confineCurrentThread(as role: ThreadRole, label: String, mode: SeccompMode) throws {
        guard mode != .off else { return }
        guard clinux_limit_thread_capabilities(role.keptCapabilities) == 0 else {
            throw SeccompError("capset for the \(role.rawValue) thread", -errno)
        }
        label.withCString { kasa_seccomp_label_thread($0) }
        try SeccompFilter(rules: VMMSyscallPolicy.rules(for: role), mode: mode).loadOnCurrentThread()
    }

    /// Confines the main thread once every other thread has started (threads inherit their
    /// creator's filter, so the main thread's comes last); a failure ends the process.
    public static func confineMainThread(mode: SeccompMode) {
        do {
            try confineCurrentThread(as: .main, label: "main", mode: mode)
        } catch {
            abandon("main thread: \(error)")
        }
    }

    /// Lowers the open-file limit, soft and hard alike, to `count` (never raises it: the hard
    /// limit may already be lower). Nothing in the VMM can raise it again: raising a hard
    /// limit takes CAP_SYS_RESOURCE, which no thread keeps, and no filter allows prlimit64.
    public static func limitOpenFiles(to count: Int) throws {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { throw SeccompError("getrlimit(RLIMIT_NOFILE)", -errno) }
        let wanted = min(limit.rlim_max, rlim_t(count))
        limit = rlimit(rlim_cur: wanted, rlim_max: wanted)
        guard setrlimit(resource, &limit) == 0 else { throw SeccompError("setrlimit(RLIMIT_NOFILE, \(wanted))", -errno) }
    }

    /// Makes the process run as `uid`/`gid` (no supplementary groups) for the rest of its
    /// life. The calling thread keeps the capabilities it had, in effect, for set-up: what
    /// the VM's configuration names is opened after this, as before, and files the VMM
    /// makes (sockets, the console log) belong to the user. Each thread started later, and
    /// this one once the others run, keeps only its role's (`ThreadRole.keptCapabilities`):
    /// nothing the guest can reach acts as root or as any user's files' owner but the
    /// virtio-fs workers'. The change of credentials also makes the process non-dumpable:
    /// its /proc files belong to root, and no process of the same user may trace it. Call
    /// while the process has one thread, after `prepareProcess`.
    public static func becomeUser(uid: UInt32, gid: UInt32) throws {
        guard clinux_become_user(uid, gid) == 0 else {
            let code = errno
            if code == EPERM && geteuid() != 0 {
                throw JailError("--user \(uid):\(gid) needs kasa-vmm started as root", code)
            }
            throw JailError("becoming user \(uid):\(gid)", code)
        }
    }

    /// System V IPC and UTS namespaces of the VMM's own: it shares neither with the host.
    /// Must run while the process has one thread (namespaces are per thread until then
    /// inherited). Without CAP_SYS_ADMIN (kasa-vmm run by an ordinary user with access to
    /// /dev/kvm) this layer is skipped: the filters and the capability drop do not need it.
    static func leaveSharedNamespaces() throws {
        guard clinux_unshare_ipc_and_uts() != 0 else { return }
        let code = errno
        guard code == EPERM, getuid() != 0 else { throw SeccompError("unshare(CLONE_NEWIPC | CLONE_NEWUTS)", -code) }
    }

    /// no_new_privs for the calling thread and the threads it starts later.
    public static func forbidNewPrivileges() throws {
        guard clinux_set_no_new_privs() == 0 else { throw SeccompError("prctl(PR_SET_NO_NEW_PRIVS)", -errno) }
    }

    /// `--seccomp=log`'s SIGSYS handler, process-wide: a trapped call is named on stderr and
    /// fails with ENOSYS.
    public static func reportViolations() throws {
        let result = kasa_seccomp_report_violations()
        guard result == 0 else { throw SeccompError("installing the SIGSYS reporter", result) }
    }

    /// Compiles `role`'s filter without loading it (tests: libseccomp takes every rule).
    public static func validateFilter(for role: ThreadRole, mode: SeccompMode) throws {
        try SeccompFilter(rules: VMMSyscallPolicy.rules(for: role), mode: mode).validate()
    }

    private static func abandon(_ message: String) -> Never {
        DescriptorIO.write(STDERR_FILENO, Array("kasa-vmm: error: confinement: \(message)\n".utf8), socket: false)
        _exit(1)
    }
}

import CKVM
#if canImport(Glibc)
import Glibc
#endif
import Confinement
import Testing

/// The allow-lists as data: what no kasa-vmm thread may ever do, whatever else it needs.
@Suite struct VMMSyscallPolicyTests {
    /// Calls that would turn a hijacked VMM thread into a host process of its own choosing,
    /// widen its privileges, or lift its filter.
    static let neverAllowed = [
        "execve", "execveat", "fork", "vfork", "clone", "clone3", "ptrace", "process_vm_writev", "process_vm_readv",
        "setuid", "setgid", "setresuid", "setresgid", "setgroups", "capset", "prctl", "seccomp", "bpf", "mount",
        "umount2", "pivot_root", "chroot", "unshare", "setns", "init_module", "finit_module", "kexec_load", "reboot",
        "personality", "userfaultfd", "perf_event_open", "keyctl", "add_key", "kill", "tkill", "rt_sigaction",
        "memfd_create", "socketpair",
    ]

    @Test(arguments: ThreadRole.allCases)
    func noRoleMayEscape(role: ThreadRole) {
        let rules = VMMSyscallPolicy.rules(for: role)
        let names = rules.map(\.name)
        for name in Self.neverAllowed {
            #expect(!names.contains(name), "\(role) may call \(name)")
        }
        #expect(Set(names).count == names.count, "\(role) names a call twice (libseccomp merges rules per call)")
        // ioctl and socket only with their arguments named; memory never executable.
        for rule in rules where ["ioctl", "socket", "fcntl", "tgkill", "mmap", "mprotect"].contains(rule.name) {
            #expect(!rule.cases.isEmpty && rule.cases.allSatisfy { !$0.isEmpty }, "\(role): \(rule.name) is unconditional")
        }
    }

    @Test(arguments: ThreadRole.allCases)
    func noRoleMayReshapeTheVM(role: ThreadRole) {
        let requests = VMMSyscallPolicy.ioctlRequests(for: role)
        // New guest memory, new vCPUs or VMs, a changed CPU model: set-up only.
        for forbidden in [CKVM_SET_USER_MEMORY_REGION, CKVM_CREATE_VCPU, CKVM_CREATE_VM, CKVM_SET_CPUID2, CKVM_SET_MSRS,
                          CKVM_SET_IRQCHIP, CKVM_SET_CLOCK, CKVM_CREATE_IRQCHIP] {
            #expect(!requests.contains(UInt64(forbidden)), "\(role) may make ioctl 0x\(String(forbidden, radix: 16))")
        }
    }

    /// No thread binds or listens after set-up (vsock's listener, made at set-up, is kept
    /// across the guest's resets); sockets are Unix ones everywhere.
    @Test func noThreadListensAfterSetUp() {
        for role in ThreadRole.allCases {
            let names = VMMSyscallPolicy.rules(for: role).map(\.name)
            #expect(!names.contains("listen"), "\(role)")
            #expect(!names.contains("bind"), "\(role)")
            #expect(VMMSyscallPolicy.socketFamilies(for: role).isSubset(of: [UInt64(AF_UNIX)]), "\(role)")
        }
    }

    @Test func onlyTheVCPUThreadsRunTheGuest() {
        for role in ThreadRole.allCases {
            let runs = VMMSyscallPolicy.ioctlRequests(for: role).contains(UInt64(CKVM_RUN))
            #expect(runs == (role == .vcpu), "\(role)")
        }
    }

    @Test(arguments: ThreadRole.allCases, SeccompMode.allCases.filter { $0 != .off })
    func libseccompCompilesEveryFilter(role: ThreadRole, mode: SeccompMode) throws {
        try VMMConfinement.validateFilter(for: role, mode: mode)
    }

    @Test func threadNamesMapToRoles() {
        let expected: [(String, ThreadRole?)] = [
            ("kasa-vcpu0", .vcpu), ("kasa-vcpu31", .vcpu), ("kasa-events", .events), ("kasa-api", .api),
            ("kasa-console", .console), ("kasa-fs0", .fileSystem), ("kasa-fs3", .fileSystem),
            ("kasa-profiler", .profiler), ("mock-events", nil), ("worker", nil), ("", nil),
        ]
        for (name, role) in expected {
            #expect(ThreadRole(threadName: name) == role, "\(name)")
        }
    }

    @Test func onlyTheFileSystemWorkersKeepCapabilities() {
        for role in ThreadRole.allCases where role != .fileSystem {
            #expect(role.keptCapabilities == 0, "\(role)")
        }
        // CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID; never
        // CAP_SYS_ADMIN (21), CAP_MKNOD (27), CAP_SETUID (7) or CAP_NET_ADMIN (12).
        #expect(ThreadRole.fileSystem.keptCapabilities == 0b11111)
    }
}

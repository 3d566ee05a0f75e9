import CKVM
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Each kasa-vmm thread role's seccomp allow-list. Anything else kills the process
/// (`SeccompMode.kill`). Lists were drawn from the code each thread runs and checked with
/// strace over the whole test suite; what is absent matters as much: no thread may start a
/// process or thread (execve, fork, clone), map executable memory, add guest memory
/// (KVM_SET_USER_MEMORY_REGION) or create KVM objects after set-up, open sockets other than
/// Unix ones, or change its credentials, capabilities or filters.
public enum VMMSyscallPolicy {
    public static func rules(for role: ThreadRole) -> [SyscallRule] {
        common + specific(role)
    }

    /// What every thread does: memory (never executable), locks, signals to its own
    /// process, time, randomness (Swift's hashing), logging to stderr (HostOS's writer
    /// tries send first, for sockets), closing, ending; sched_getaffinity for glibc's malloc,
    /// which sizes its arena count from it the first time a thread needs a new arena.
    /// The ioctl requests `role` may make.
    public static func ioctlRequests(for role: ThreadRole) -> Set<UInt64> {
        Set(rules(for: role).filter { $0.name == "ioctl" }.flatMap(\.cases).flatMap { $0 }.map(\.value))
    }

    /// The socket families (argument 0, masked to 32 bits) `role` may open.
    public static func socketFamilies(for role: ThreadRole) -> Set<UInt64> {
        Set(rules(for: role).filter { $0.name == "socket" }.flatMap(\.cases).flatMap { $0 }.map(\.valueTwo))
    }

    static var common: [SyscallRule] {
        let noExec = [[ArgumentCondition.clear(2, UInt64(PROT_EXEC))]]
        let ownProcess = [[ArgumentCondition.equals32(0, getpid())]]
        return [
            SyscallRule("mmap", cases: noExec), SyscallRule("mprotect", cases: noExec),
            SyscallRule("munmap"), SyscallRule("madvise"), SyscallRule("brk"), SyscallRule("mremap"),
            SyscallRule("futex"), SyscallRule("sched_yield"),
            SyscallRule("rt_sigprocmask"), SyscallRule("rt_sigreturn"), SyscallRule("sigaltstack"),
            SyscallRule("tgkill", cases: ownProcess), SyscallRule("getpid"), SyscallRule("gettid"),
            SyscallRule("clock_gettime"), SyscallRule("clock_nanosleep"), SyscallRule("nanosleep"),
            SyscallRule("restart_syscall"), SyscallRule("getrandom"),
            SyscallRule("write"), SyscallRule("sendto"), SyscallRule("close"), SyscallRule("sched_getaffinity"),
            SyscallRule("exit"), SyscallRule("exit_group"),
        ]
    }

    // ioctl requests by what they touch.
    /// Interrupt lines: serial (KVM_IRQ_LINE_STATUS) and virtio devices whose irqfd KVM refused.
    static let interruptRequests = [CKVM_IRQ_LINE, CKVM_IRQ_LINE_STATUS]
    /// A vCPU's own state: run it, read it all for a snapshot, the registers and events the
    /// emulation-failure path writes back.
    static let vcpuRequests = [
        CKVM_RUN, CKVM_GET_REGS, CKVM_SET_REGS, CKVM_GET_SREGS, CKVM_SET_SREGS, CKVM_GET_FPU,
        CKVM_GET_MSRS, CKVM_GET_MSR_INDEX_LIST, CKVM_GET_LAPIC, CKVM_GET_VCPU_EVENTS, CKVM_SET_VCPU_EVENTS,
        CKVM_GET_MP_STATE, CKVM_GET_XSAVE, CKVM_GET_XSAVE2, CKVM_GET_XCRS, CKVM_GET_DEBUGREGS,
        CKVM_GET_CPUID2, CKVM_TRANSLATE,
    ]
    /// A device the guest activates (on the vCPU thread that writes DRIVER_OK): its queue
    /// notifications and interrupt (ioeventfd, irqfd) and a TAP's offloads.
    static let activationRequests = [CKVM_IOEVENTFD, CKVM_IRQFD, CLINUX_TUNSETOFFLOAD, CLINUX_TUNSETVNETHDRSZ]
    /// The VM-wide state a snapshot reads.
    static let snapshotRequests = [CKVM_GET_IRQCHIP, CKVM_GET_PIT2, CKVM_GET_CLOCK, CKVM_GET_SUPPORTED_CPUID, CKVM_GET_MSR_INDEX_LIST]

    static func ioctl(_ requests: [UInt]) -> SyscallRule {
        .when("ioctl", argument: 1, isOneOf: requests.map { UInt64($0) })
    }

    /// Descriptor flags (non-blocking, close-on-exec) and nothing else fcntl can do.
    static let descriptorFlags = SyscallRule.when("fcntl", argument: 1, isOneOf32: [F_GETFL, F_SETFL, F_GETFD, F_SETFD])

    /// Sockets: only Unix ones (vsock's host side is Unix sockets).
    static let unixSocket = SyscallRule.when("socket", argument: 0, isOneOf32: [AF_UNIX])

    static func specific(_ role: ThreadRole) -> [SyscallRule] {
        switch role {
        case .vcpu:
            // Exits: port and MMIO writes reach the devices: the console's output (a file it
            // may start over, a pipe, a socket), eventfds, resets, activation (a TAP's
            // offloads; vsock's listener is made at set-up and kept across resets).
            return [ioctl(vcpuRequests + interruptRequests + activationRequests),
                    SyscallRule("read"), SyscallRule("lseek"), SyscallRule("ftruncate"),
                    SyscallRule("eventfd2"), SyscallRule("poll"), descriptorFlags]
        case .events:
            // virtio-blk (positioned vectored I/O, flushes), virtio-net (the TAP), vsock (Unix
            // sockets to and from the host, accepted and dialled), virtio-rng, the loop's wake-up.
            return [ioctl(interruptRequests), SyscallRule("poll"), SyscallRule("ppoll"),
                    SyscallRule("read"), SyscallRule("readv"), SyscallRule("writev"),
                    SyscallRule("pread64"), SyscallRule("pwrite64"), SyscallRule("preadv"), SyscallRule("pwritev"),
                    SyscallRule("fsync"), SyscallRule("fdatasync"),
                    unixSocket, SyscallRule("connect"), SyscallRule("accept"), SyscallRule("accept4"),
                    SyscallRule("recvfrom"), SyscallRule("sendmsg"), SyscallRule("recvmsg"),
                    SyscallRule("shutdown"), SyscallRule("getsockopt"), SyscallRule("unlink"),
                    SyscallRule("newfstatat"), SyscallRule("lseek"), SyscallRule("ftruncate"), descriptorFlags]
        case .api:
            // Clients (requests read with recvmsg: drives may come as descriptors), drives
            // put into slots (opened here unless sent), snapshots (a directory of files,
            // the memory's written extents found with SEEK_DATA), pausing the vCPUs.
            return [ioctl(interruptRequests + snapshotRequests),
                    SyscallRule("accept"), SyscallRule("accept4"), SyscallRule("read"), SyscallRule("recvmsg"),
                    SyscallRule("openat"), SyscallRule("newfstatat"), SyscallRule("lseek"),
                    SyscallRule("pread64"), SyscallRule("pwrite64"), SyscallRule("ftruncate"), SyscallRule("fsync"),
                    SyscallRule("fdatasync"), SyscallRule("mkdir"), SyscallRule("mkdirat"), SyscallRule("rename"),
                    SyscallRule("renameat"), SyscallRule("renameat2"), SyscallRule("unlink"), SyscallRule("unlinkat"),
                    SyscallRule("getdents64"), descriptorFlags]
        case .console:
            return [SyscallRule("read")]
        case .fileSystem:
            // FUSE requests: every call beneath the export goes through a held descriptor
            // (openat2 with RESOLVE_BENEATH, *at calls with empty paths, /proc/self/fd).
            return [ioctl(interruptRequests), SyscallRule("openat2"), SyscallRule("openat"),
                    SyscallRule("newfstatat"), SyscallRule("statx"), SyscallRule("fstatfs"),
                    SyscallRule("faccessat"), SyscallRule("faccessat2"), SyscallRule("getdents64"),
                    SyscallRule("lseek"), SyscallRule("readlinkat"), SyscallRule("fchmodat"), SyscallRule("fchownat"),
                    SyscallRule("ftruncate"), SyscallRule("utimensat"), SyscallRule("mkdirat"), SyscallRule("mknodat"),
                    SyscallRule("symlinkat"), SyscallRule("linkat"), SyscallRule("unlinkat"), SyscallRule("renameat2"),
                    SyscallRule("fsync"), SyscallRule("fdatasync"), SyscallRule("fallocate"),
                    SyscallRule("read"), SyscallRule("pread64"), SyscallRule("pwrite64"),
                    SyscallRule("preadv"), SyscallRule("pwritev"),
                    SyscallRule("getxattr"), SyscallRule("setxattr"), SyscallRule("listxattr"), SyscallRule("removexattr"),
                    descriptorFlags]
        case .profiler:
            // Samples by signalling vCPU threads (tgkill, in `common`) and sleeping; rewrites
            // the profile file (opened at set-up) every second.
            return [SyscallRule("ftruncate"), SyscallRule("pwrite64")]
        case .main:
            // Waits for the end, stops and joins the rest, writes the profile and the
            // verbose interrupt diagnosis, removes the vsock listener's socket, exits.
            return [ioctl(interruptRequests + [CKVM_GET_IRQCHIP, CKVM_GET_LAPIC]),
                    SyscallRule("openat"), SyscallRule("newfstatat"), SyscallRule("read"),
                    SyscallRule("shutdown"), SyscallRule("unlink"), SyscallRule("lseek"),
                    SyscallRule("ftruncate"), SyscallRule("pwrite64"), descriptorFlags]
        }
    }
}

/// Linux capability names and numbers (linux/capability.h), as the OCI spec spells them.
public enum LinuxCapabilities {
    /// "CAP_CHOWN" -> 0 ... "CAP_CHECKPOINT_RESTORE" -> 40.
    public static let numbers: [String: Int] = {
        var table: [String: Int] = [:]
        for (number, name) in names.enumerated() { table[name] = number }
        return table
    }()

    /// Indexed by capability number.
    public static let names: [String] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
        "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ]

    /// The number of a capability name (case-insensitive, "CAP_" prefix optional), or nil.
    public static func number(of name: String) -> Int? {
        let upper = name.uppercased()
        return numbers[upper.hasPrefix("CAP_") ? upper : "CAP_" + upper]
    }

    /// A 64-bit set from names; unknown names are returned in `unknown`.
    public static func mask(of names: [String]) -> (mask: UInt64, unknown: [String]) {
        var mask: UInt64 = 0
        var unknown: [String] = []
        for name in names {
            if let number = number(of: name) { mask |= 1 << UInt64(number) } else { unknown.append(name) }
        }
        return (mask, unknown)
    }
}

/// RLIMIT_* names and numbers (the kernel's generic ABI: x86_64, arm64, riscv64...).
public enum LinuxResourceLimits {
    public static let numbers: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
        "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
        "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
        "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]

    /// The resource number of an OCI rlimit type ("RLIMIT_NOFILE"), or nil.
    public static func number(of name: String) -> Int32? {
        numbers[name]
    }
}

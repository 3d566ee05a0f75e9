import CAgentLinux

/// OCI/fstab mount options split into mount(2) flags, propagation changes and the
/// filesystem-specific data string, as runc does.
public struct MountOptions: Equatable, Sendable {
    /// MS_* flags for the mount call (MS_BIND and MS_REC for bind/rbind included).
    public var flags: UInt
    /// Propagation changes (MS_PRIVATE, MS_SHARED, MS_SLAVE, MS_UNBINDABLE, each
    /// possibly | MS_REC) applied after the mount, in order.
    public var propagation: [UInt]
    /// Everything else, comma-joined in order ("mode=755,size=65536k"), or "".
    public var data: String

    public var isBind: Bool { flags & UInt(KASA_MS_BIND) != 0 }
    public var isRecursive: Bool { flags & UInt(KASA_MS_REC) != 0 }

    /// The flags a bind remount must set: everything except bind/rec/remount.
    public var remountFlags: UInt {
        flags & ~UInt(KASA_MS_BIND | KASA_MS_REC | KASA_MS_REMOUNT)
    }

    public init(flags: UInt = 0, propagation: [UInt] = [], data: String = "") {
        self.flags = flags
        self.propagation = propagation
        self.data = data
    }

    /// Parses options like ["nosuid", "noexec", "nodev", "ro", "mode=755", "rbind"].
    public init(parsing options: [String]) {
        var flags: UInt = 0
        var propagation: [UInt] = []
        var data: [String] = []
        for option in options {
            if let (clear, bits) = Self.flagOptions[option] {
                if clear { flags &= ~bits } else { flags |= bits }
            } else if let bits = Self.propagationOptions[option] {
                propagation.append(bits)
            } else if !option.isEmpty {
                data.append(option)
            }
        }
        self.init(flags: flags, propagation: propagation, data: data.joined(separator: ","))
    }

    /// option -> (clears?, flags)
    static let flagOptions: [String: (Bool, UInt)] = [
        "async": (true, UInt(KASA_MS_SYNCHRONOUS)),
        "atime": (true, UInt(KASA_MS_NOATIME)),
        "bind": (false, UInt(KASA_MS_BIND)),
        "defaults": (false, 0),
        "dev": (true, UInt(KASA_MS_NODEV)),
        "diratime": (true, UInt(KASA_MS_NODIRATIME)),
        "dirsync": (false, UInt(KASA_MS_DIRSYNC)),
        "exec": (true, UInt(KASA_MS_NOEXEC)),
        "mand": (false, UInt(KASA_MS_MANDLOCK)),
        "noatime": (false, UInt(KASA_MS_NOATIME)),
        "nodev": (false, UInt(KASA_MS_NODEV)),
        "nodiratime": (false, UInt(KASA_MS_NODIRATIME)),
        "noexec": (false, UInt(KASA_MS_NOEXEC)),
        "nomand": (true, UInt(KASA_MS_MANDLOCK)),
        "norelatime": (true, UInt(KASA_MS_RELATIME)),
        "nostrictatime": (true, UInt(KASA_MS_STRICTATIME)),
        "nosuid": (false, UInt(KASA_MS_NOSUID)),
        "rbind": (false, UInt(KASA_MS_BIND | KASA_MS_REC)),
        "relatime": (false, UInt(KASA_MS_RELATIME)),
        "remount": (false, UInt(KASA_MS_REMOUNT)),
        "ro": (false, UInt(KASA_MS_RDONLY)),
        "rw": (true, UInt(KASA_MS_RDONLY)),
        "strictatime": (false, UInt(KASA_MS_STRICTATIME)),
        "suid": (true, UInt(KASA_MS_NOSUID)),
        "sync": (false, UInt(KASA_MS_SYNCHRONOUS)),
    ]

    static let propagationOptions: [String: UInt] = [
        "private": UInt(KASA_MS_PRIVATE),
        "rprivate": UInt(KASA_MS_PRIVATE | KASA_MS_REC),
        "shared": UInt(KASA_MS_SHARED),
        "rshared": UInt(KASA_MS_SHARED | KASA_MS_REC),
        "slave": UInt(KASA_MS_SLAVE),
        "rslave": UInt(KASA_MS_SLAVE | KASA_MS_REC),
        "unbindable": UInt(KASA_MS_UNBINDABLE),
        "runbindable": UInt(KASA_MS_UNBINDABLE | KASA_MS_REC),
    ]
}

/// Everything needed to start one process inside a container, decided by the agent from
/// the OCI spec and handed to the launcher (a re-executed kata-agent in container-init
/// mode) as JSON on a pipe. Plain values only, so it crosses the exec boundary unchanged.
public struct ContainerLaunchSpec: Codable, Sendable, Equatable {
    public struct Mount: Codable, Sendable, Equatable {
        public var destination: String
        public var type: String
        public var source: String
        public var options: [String]

        public init(destination: String, type: String, source: String, options: [String] = []) {
            self.destination = destination
            self.type = type
            self.source = source
            self.options = options
        }
    }

    public struct ResourceLimit: Codable, Sendable, Equatable {
        /// RLIMIT_* name as in the OCI spec, e.g. "RLIMIT_NOFILE".
        public var type: String
        public var soft: UInt64
        public var hard: UInt64

        public init(type: String, soft: UInt64, hard: UInt64) {
            self.type = type
            self.soft = soft
            self.hard = hard
        }
    }

    public enum Namespaces: Codable, Sendable, Equatable {
        /// New mount, UTS, IPC and PID namespaces: the container's first process.
        case create
        /// Join the namespaces of the process with this pid (as the agent sees it): exec.
        case join(pid: Int32)
    }

    /// Absolute path of the container's root directory (already mounted by the agent).
    public var rootfs: String
    public var readonlyRootfs: Bool
    public var mounts: [Mount]
    public var hostname: String?
    public var args: [String]
    public var env: [String]
    public var cwd: String
    public var uid: UInt32
    public var gid: UInt32
    public var additionalGids: [UInt32]
    /// Capability names ("CAP_CHOWN"...) kept in the bounding, effective, permitted and
    /// inheritable sets; nil keeps the launcher's own (all, as root).
    public var capabilities: [String]?
    public var noNewPrivileges: Bool
    public var rlimits: [ResourceLimit]
    public var maskedPaths: [String]
    public var readonlyPaths: [String]
    public var namespaces: Namespaces
    /// A cgroup v2 directory the process joins before exec (the agent creates it).
    public var cgroupPath: String?
    /// stdin/stdout/stderr are a terminal (the agent passes a pty slave as fds 0-2).
    public var terminal: Bool
    /// The five capability sets separately, as an OCI spec gives them. When set it wins
    /// over `capabilities`; nil (the default, and what older JSON decodes to) means
    /// "use `capabilities` for bounding, effective, permitted and inheritable".
    public var capabilitySets: CapabilitySets?
    /// With `.create`: namespaces joined from another process instead of made anew (a
    /// pod's container shares the pod sandbox's IPC and UTS namespaces). nil: none.
    public var sharedNamespaces: SharedNamespaces?
    /// The OCI linux.seccomp profile the process is filtered by (nil: none).
    public var seccomp: SeccompProfile?

    /// Namespaces of process `pid` (as the agent sees it) by their /proc/PID/ns names.
    public struct SharedNamespaces: Codable, Sendable, Equatable {
        public var pid: Int32
        /// Any of "ipc", "uts", "net".
        public var kinds: [String]
        public init(pid: Int32, kinds: [String]) {
            self.pid = pid
            self.kinds = kinds
        }
    }

    /// Capability names ("CAP_CHOWN"...) per set, as in the OCI spec's process.capabilities.
    public struct CapabilitySets: Codable, Sendable, Equatable {
        public var bounding: [String]
        public var effective: [String]
        public var permitted: [String]
        public var inheritable: [String]
        public var ambient: [String]

        public init(bounding: [String] = [], effective: [String] = [], permitted: [String] = [],
                    inheritable: [String] = [], ambient: [String] = []) {
            self.bounding = bounding
            self.effective = effective
            self.permitted = permitted
            self.inheritable = inheritable
            self.ambient = ambient
        }

        /// The same names in bounding, effective, permitted and inheritable; no ambient.
        public init(keeping names: [String]) {
            self.init(bounding: names, effective: names, permitted: names, inheritable: names)
        }
    }

    /// The sets the launcher applies: `capabilitySets`, else `capabilities` in all four
    /// sets, else nil (keep the launcher's own).
    public var effectiveCapabilitySets: CapabilitySets? {
        capabilitySets ?? capabilities.map { CapabilitySets(keeping: $0) }
    }

    public init(rootfs: String, readonlyRootfs: Bool = false, mounts: [Mount] = [], hostname: String? = nil,
                args: [String], env: [String] = [], cwd: String = "/", uid: UInt32 = 0, gid: UInt32 = 0,
                additionalGids: [UInt32] = [], capabilities: [String]? = nil, noNewPrivileges: Bool = false,
                rlimits: [ResourceLimit] = [], maskedPaths: [String] = [], readonlyPaths: [String] = [],
                namespaces: Namespaces = .create, cgroupPath: String? = nil, terminal: Bool = false,
                capabilitySets: CapabilitySets? = nil) {
        self.rootfs = rootfs
        self.readonlyRootfs = readonlyRootfs
        self.mounts = mounts
        self.hostname = hostname
        self.args = args
        self.env = env
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.additionalGids = additionalGids
        self.capabilities = capabilities
        self.noNewPrivileges = noNewPrivileges
        self.rlimits = rlimits
        self.maskedPaths = maskedPaths
        self.readonlyPaths = readonlyPaths
        self.namespaces = namespaces
        self.cgroupPath = cgroupPath
        self.terminal = terminal
        self.capabilitySets = capabilitySets
    }
}

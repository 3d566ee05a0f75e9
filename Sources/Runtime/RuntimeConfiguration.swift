/// The effective settings of the runtime: configuration.toml's subset (docs/configuration.md)
/// on top of built-in defaults.
public struct RuntimeConfiguration: Sendable, Equatable {
    /// [hypervisor.kasa]
    public struct Hypervisor: Sendable, Equatable {
        /// The kasa-vmm executable.
        public var path: String
        public var kernel: String
        /// The guest's root disk image whose /init is kata-agent (images/build-agent-image.sh);
        /// "" when booting `initrd` instead. Exactly one of the two is set.
        public var image: String
        /// An initrd whose /init is kata-agent (images/build-agent-initrd.sh); "" when `image` is used.
        public var initrd: String
        /// Appended to the guest command line Kasa builds.
        public var kernelParams: String
        public var defaultVCPUs: Int
        public var defaultMemoryMiB: Int
    }

    /// [agent.kata]
    public struct Agent: Sendable, Equatable {
        /// Seconds to wait for the agent to answer after the VM starts. nil = the default
        /// for this host (`effectiveDialTimeout`).
        public var dialTimeoutSeconds: Int?
        /// kata-agent serves a shell on vsock port 1026 (`kata-runtime exec`).
        public var debugConsoleEnabled: Bool
    }

    /// [runtime]
    public struct Runtime: Sendable, Equatable {
        /// The VM's console (kernel and agent log) goes to stderr as well as the log file.
        public var enableDebug: Bool
        /// Per-sandbox state (sockets, console log); removed when the sandbox ends.
        public var stateDirectory: String
        /// Root filesystem images, by content digest (Kasa's key).
        public var imageCacheDirectory: String
    }

    public var hypervisor: Hypervisor
    public var agent: Agent
    public var runtime: Runtime
    /// The file these settings came from; nil = built-in defaults only.
    public var sourcePath: String?

    /// Defaults for an installed Kasa (scripts/install.sh puts the files there).
    public static let defaults = RuntimeConfiguration(
        hypervisor: Hypervisor(path: "/usr/local/bin/kasa-vmm",
                               kernel: "/usr/share/kasa/vmlinux",
                               image: "/usr/share/kasa/kata-agent.img",
                               initrd: "",
                               kernelParams: "", defaultVCPUs: 1, defaultMemoryMiB: 512),
        agent: Agent(dialTimeoutSeconds: nil, debugConsoleEnabled: false),
        runtime: Runtime(enableDebug: false, stateDirectory: "/run/kasa/sandboxes",
                         imageCacheDirectory: "/var/cache/kasa/rootfs"),
        sourcePath: nil)

    /// Kata waits 45 s for its agent. On a kvm_pvm host the guest kernel is emulated and
    /// the agent answers after 1-2 minutes (docs/kvm-pvm.md), so the default is ten times
    /// longer there. A VM that dies is noticed at once either way; only a hung guest
    /// waits this long.
    public func effectiveDialTimeout(onPVMHost: Bool) -> Int {
        agent.dialTimeoutSeconds ?? (onPVMHost ? 450 : 45)
    }

    /// How long the runtime waits for one agent call (not configurable): 30 s, and four
    /// times that on a kvm_pvm host, where every guest kernel path is emulated.
    public static func agentCallTimeout(onPVMHost: Bool) -> Double {
        onPVMHost ? 120 : 30
    }
}

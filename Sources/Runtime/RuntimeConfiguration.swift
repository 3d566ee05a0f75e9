import MachineSize

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
        /// Kata's `default_maxvcpus`: the most vCPUs a sized sandbox may get (0: this
        /// host's CPUs, at most 32).
        public var defaultMaxVCPUs = 0
        /// Kata's `default_maxmemory` (MiB): the most memory a sized sandbox may get (0:
        /// this host's RAM).
        public var defaultMaxMemoryMiB = 0
        /// Kata's `shared_fs`: how containers' files reach the VM.
        public var sharedFileSystem: SharedFileSystemChoice = .none
        /// Kata's `virtio_fs_cache`: never, auto or always (with `shared_fs = "virtio-fs"`).
        public var virtioFSCache = "auto"
        /// Kata's `disable_seccomp` (Cloud Hypervisor's key): when on, kasa-vmm runs without
        /// its per-thread seccomp filters and keeps its capabilities (`--seccomp off`); for
        /// debugging only.
        public var disableSeccomp = false
        /// Kasa's `enable_jail`: each kasa-vmm runs in a mount namespace of its own whose
        /// root holds only the paths its VM uses (`kasa-vmm --jail`).
        public var enableJail = true
        /// Kasa's `vmm_user`: the host user every jailed kasa-vmm runs as after set-up
        /// (`kasa-vmm --user`); "root" keeps root (its threads still drop capabilities).
        public var vmmUser = VMMUser.defaultName
    }

    /// `shared_fs`: "virtio-fs" serves each sandbox's shared directory from kasa-vmm (live
    /// volumes, rootfs without an image); "none" copies bind mounts in at create and gives
    /// the rootfs as a read-only ext4 image.
    public enum SharedFileSystemChoice: String, Sendable, Equatable {
        case none
        case virtioFS = "virtio-fs"
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
        /// How a pod's network reaches its VM (Kata's `internetworking_model`).
        public var internetworkingModel: InternetworkingModel = .tcFilter
        /// Kata's `disable_new_netns`: Kasa never makes a network namespace of its own (the
        /// pod's comes from CRI; `kata-runtime run --net` names one), so this is accepted
        /// and changes nothing.
        public var disableNewNetworkNamespace = false
        /// Kata's `static_sandbox_resource_mgmt`: a sandbox's VM is sized when it is made,
        /// the defaults plus what its containers' limits ask (`SandboxSizing`); kasa-vmm
        /// cannot add memory or vCPUs later, so this is on unless turned off.
        public var staticSandboxResourceManagement = true
        /// Kata's `disable_guest_seccomp`: when on, the containers' OCI seccomp profiles are
        /// dropped instead of applied by the agent in the VM. Off: a profile in the spec
        /// (CRI sends containerd's default one) filters the container, as with runc.
        public var disableGuestSeccomp = false
        /// Kata's `sandbox_cgroup_only`: each sandbox's kasa-vmm runs in a cgroup of its own
        /// (`SandboxCgroup`: `kasa/<sandbox>-<tag>` in the host's cgroup v2 hierarchy), made
        /// before it starts and removed after; off, it stays in the runtime's cgroup.
        public var sandboxCgroupOnly = true
    }

    /// [factory]: VM templates (Kata's keys).
    public struct Factory: Sendable, Equatable {
        /// Start sandboxes by restoring a snapshot of a booted template VM instead of booting
        /// a kernel (built on first use, or by `kata-runtime factory init`).
        public var enableTemplate = false
        /// Where the template's snapshot lives (a tmpfs, so its pages are memory that every
        /// sandbox shares read-only).
        public var templatePath = "/run/vc/vm/template"
    }

    /// The template directory this configuration's sandboxes use: `template_path`, or with
    /// `shared_fs = "virtio-fs"` `<template_path>-virtio-fs` beside it (that template has the
    /// virtio-fs device). Two runtime classes that differ only in `shared_fs` (containerd's
    /// `kata` and a `kata-fs`, say) then never rebuild each other's template.
    public var templateDirectory: String {
        hypervisor.sharedFileSystem == .virtioFS ? factory.templatePath + "-virtio-fs" : factory.templatePath
    }

    /// `tcfilter`: a TAP per pod interface joined to it by tc filters (Kata's default);
    /// `none`: the VM gets no NIC.
    public enum InternetworkingModel: String, Sendable, Equatable, CaseIterable {
        case tcFilter = "tcfilter"
        case none
    }

    public var hypervisor: Hypervisor
    public var agent: Agent
    public var runtime: Runtime
    public var factory = Factory()
    /// The file these settings came from; nil = built-in defaults only.
    public var sourcePath: String?

    /// Defaults for an installed Kasa (scripts/install.sh puts the files there).
    public static let defaults = RuntimeConfiguration(
        hypervisor: Hypervisor(path: "/usr/local/bin/kasa-vmm",
                               kernel: "/usr/share/kasa/vmlinux",
                               image: "/usr/share/kasa/kata-agent.img",
                               initrd: "",
                               kernelParams: "", defaultVCPUs: MachineSize.defaultVCPUs, defaultMemoryMiB: MachineSize.sandboxDefaultMemoryMiB),
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

extension RuntimeConfiguration.Runtime {
    /// The longest file name a sandbox's Unix sockets take in its directory: the vsock
    /// bridge's `vsock.sock_PORT` for guest-initiated connections, PORT up to 10 digits.
    static let longestSocketName = "vsock.sock_4294967295"
    /// sun_path holds 108 bytes with the terminating NUL.
    static let socketPathLimit = 107

    /// Sandbox `id`'s directory under `state_dir` (sockets, logs, the VMM's pid). Named by
    /// the ID where its sockets' paths fit in a Unix socket address; else (CRI's sandbox
    /// IDs are 64 hex digits, so a `state_dir` over ~30 bytes) by a 24-digit SHA-256 of the
    /// ID: the same for every process that looks for it (shim, `delete`, `kata-runtime exec`).
    public func sandboxDirectory(for id: String) -> String {
        let plain = stateDirectory + "/" + id
        if (plain + "/" + Self.longestSocketName).utf8.count <= Self.socketPathLimit { return plain }
        return stateDirectory + "/" + String(ContentHash.hexDigest(of: id).prefix(24))
    }

    /// Why sandboxes cannot run under this `state_dir` (their sockets' paths would be too
    /// long even with the shortest directory name), or nil when they can.
    public var socketPathProblem: String? {
        let longest = stateDirectory + "/" + String(repeating: "0", count: 24) + "/" + Self.longestSocketName
        let excess = longest.utf8.count - Self.socketPathLimit
        guard excess > 0 else { return nil }
        return "[runtime] state_dir \(stateDirectory) is \(excess) bytes too long: a sandbox's Unix sockets under it "
            + "(\(longest)) would exceed the \(Self.socketPathLimit) bytes a socket path may have"
    }
}

/// What a kasa-vmm thread does, which decides its seccomp allow-list and the capabilities
/// it keeps. Each thread is named for its role when it starts (`JoinableThread`'s name),
/// so the role is read back from the name.
public enum ThreadRole: String, Sendable, CaseIterable {
    /// The process's first thread: set-up (unfiltered), then, once every other thread has
    /// started, waiting for the VM to end and stopping the rest.
    case main
    /// Runs one vCPU: KVM_RUN and the port and MMIO exits (devices' registers, activation).
    case vcpu
    /// The event loop: queue notifications, virtio-blk and virtio-net I/O, vsock sockets.
    case events
    /// `--api-socket`: drive slots, pause and resume, snapshots.
    case api
    /// Standard input to the serial console.
    case console
    /// virtio-fs request workers: host file-system calls beneath the exported directory.
    case fileSystem
    /// `--profile`: samples the vCPUs' instruction pointers.
    case profiler

    /// The role of a thread named `name` by kasa-vmm; nil for a name it never gives.
    public init?(threadName name: String) {
        let prefixes: [(String, ThreadRole)] = [
            ("kasa-vcpu", .vcpu), ("kasa-events", .events), ("kasa-api", .api),
            ("kasa-console", .console), ("kasa-fs", .fileSystem), ("kasa-profiler", .profiler),
        ]
        guard let match = prefixes.first(where: { name.hasPrefix($0.0) }) else { return nil }
        self = match.1
    }

    /// CAP_* numbers (linux/capability.h).
    enum Capability: Int {
        case chown = 0, dacOverride = 1, dacReadSearch = 2, fowner = 3, fsetid = 4
    }

    /// The capabilities the thread keeps, as a bit per CAP_* number. Only the virtio-fs
    /// workers keep any: they act on files the guest owns under any uid (open them, chown,
    /// chmod, set times, keep set-group-ID bits), as the guest asks. Every other thread
    /// needs none after set-up (what it opens belongs to the VMM's own user).
    public var keptCapabilities: UInt64 {
        switch self {
        case .fileSystem:
            return [Capability.chown, .dacOverride, .dacReadSearch, .fowner, .fsetid].reduce(0) { $0 | 1 << UInt64($1.rawValue) }
        case .main, .vcpu, .events, .api, .console, .profiler:
            return 0
        }
    }
}

import Foundation

/// What the task service needs from whatever runs the containers: the Kasa VM (the
/// product) or a fake (the service's tests). Blocking implementations must not block
/// the caller's task: the service awaits these from its request tasks.
public protocol ShimRuntime: Sendable {
    /// Creates the container (for the first one: boots the sandbox); returns its pid as
    /// the shim reports it.
    func create(_ container: ShimContainerSpec) async throws -> UInt32
    /// Starts the container's init process or an exec'd one.
    func start(containerID: String, execID: String) async throws -> UInt32
    /// Blocks until the process exits; its status (128+n for signal n).
    func wait(containerID: String, execID: String) async throws -> Int32
    func signal(containerID: String, execID: String, signal: UInt32, all: Bool) async throws
    func exec(containerID: String, execID: String, processJSON: [UInt8], stdio: ShimStdio) async throws
    func resizePty(containerID: String, execID: String, rows: UInt32, columns: UInt32) async throws
    func closeStdin(containerID: String, execID: String) async throws
    /// Removes the container (or forgets the exec) after its process ended.
    func delete(containerID: String, execID: String) async throws
    /// Freezes (`paused`) or thaws every process of the container.
    func setPaused(containerID: String, _ paused: Bool) async throws
    /// New resource limits: an OCI LinuxResources object, as JSON.
    func update(containerID: String, resourcesJSON: [UInt8]) async throws
    func stats(containerID: String) async throws -> ShimContainerStats
    /// The container's processes, as the guest numbers them.
    func processes(containerID: String) async throws -> [UInt32]
    /// Blocks until the kernel's OOM killer hits a container of the sandbox; its id.
    /// Throws when the sandbox is gone.
    func nextOOMKill() async throws -> String
    /// Stops the sandbox and releases everything on the host.
    func shutdown() async
}

/// A container's resource use, from its cgroup in the guest. Limits of 0 mean none.
public struct ShimContainerStats: Sendable, Equatable {
    public var cpuUsageMicroseconds: UInt64 = 0
    public var cpuUserMicroseconds: UInt64 = 0
    public var cpuSystemMicroseconds: UInt64 = 0
    public var memoryUsageBytes: UInt64 = 0
    public var memoryLimitBytes: UInt64 = 0
    public var pids: UInt64 = 0
    public var pidsLimit: UInt64 = 0

    public init() {}
}

/// Where containerd wants a process's streams: FIFO paths (or file://, binary:// URIs);
/// empty = no stream.
public struct ShimStdio: Sendable, Equatable {
    public var stdin: String
    public var stdout: String
    public var stderr: String
    public var terminal: Bool

    public init(stdin: String, stdout: String, stderr: String, terminal: Bool) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
    }
}

public struct ShimContainerSpec: Sendable, Equatable {
    public var id: String
    public var bundle: String
    /// containerd's rootfs mounts (overlay or bind, no target); empty when the bundle's
    /// config.json names the root directory itself (`ctr run --rootfs`).
    public var rootfsMounts: [ShimMount]
    public var stdio: ShimStdio

    public init(id: String, bundle: String, rootfsMounts: [ShimMount], stdio: ShimStdio) {
        self.id = id
        self.bundle = bundle
        self.rootfsMounts = rootfsMounts
        self.stdio = stdio
    }
}

public struct ShimMount: Sendable, Equatable {
    public var type: String
    public var source: String
    public var options: [String]

    public init(type: String, source: String, options: [String]) {
        self.type = type
        self.source = source
        self.options = options
    }
}

/// A failure with the ttrpc status containerd should see.
public struct ShimError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case notFound, alreadyExists, failedPrecondition, invalidArgument, unimplemented, internalError }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

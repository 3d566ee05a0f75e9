import AgentProtocol
import Foundation
import KasaJSON
import Runtime
import HostOS

/// The shim's runtime: one Kasa microVM per shim (a sandbox), its containers created by
/// kata-agent over vsock, their streams bridged to containerd's FIFOs. Blocking agent
/// calls run on threads of their own (`blocking`), never on the task pool.
///
/// The first container boots the VM with its rootfs on the boot command line. When it is
/// a Kubernetes pod sandbox (io.kubernetes.cri.container-type=sandbox), the VM also gets
/// empty drive slots: each later container of the pod has its rootfs image put into one
/// while the VM runs, and the slot is emptied when that container is deleted. Deleting
/// the sandbox's own container stops the VM (CRI deletes it last).
public final class KasaShimRuntime: ShimRuntime, @unchecked Sendable {
    let configuration: RuntimeConfiguration
    let callTimeout: Double
    let dialTimeout: Double
    let log: @Sendable (String) -> Void
    /// containerd's namespace of this shim's containers (binary:// loggers are told it).
    let namespace: String
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var backend: MicroVMBackend?
    private var agent: SandboxAgent?
    private var sandboxID: String?
    private var mountedRootfs: [String: String] = [:]  // container id -> host path we mounted
    private var attachedDrives: [String: Int] = [:]  // container id -> the drive slot its rootfs is in
    private var stdio: [String: OpenStdio] = [:]  // "container/exec" -> descriptors

    struct OpenStdio {
        var stdin: Int32?
        var stdout: Int32?
        var stderr: Int32?
        var terminal: Bool
        let cancel = StdinCancellation()
        /// The stream pumps own the descriptors once started.
        var pumping = false
    }

    /// Rootfs slots a pod's VM gets for the containers after the sandbox (virtio-mmio
    /// leaves room for 19 devices; each slot costs the guest one probe at boot).
    public static let podDriveSlots = VMTemplate.driveSlots

    public init(configuration: RuntimeConfiguration, onPVMHost: Bool, namespace: String = "default",
                log: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.namespace = namespace
        self.callTimeout = RuntimeConfiguration.agentCallTimeout(onPVMHost: onPVMHost)
        self.dialTimeout = Double(configuration.effectiveDialTimeout(onPVMHost: onPVMHost))
        self.log = log
    }

    // MARK: ShimRuntime

    public func create(_ container: ShimContainerSpec) async throws -> UInt32 {
        try await blocking { [self] in try createBlocking(container) }
    }

    public func start(containerID: String, execID: String) async throws -> UInt32 {
        try await blocking { [self] in
            let agent = try connectedAgent()
            let exec = execID.isEmpty ? containerID : execID
            if execID.isEmpty {
                try call { try agent.startContainer(containerID) }
            }
            startPumps(agent: agent, containerID: containerID, execID: exec)
            return UInt32(monitor.withLock { backend?.vmmPID } ?? 0)
        }
    }

    public func wait(containerID: String, execID: String) async throws -> Int32 {
        try await blocking { [self] in
            let agent = try connectedAgent()
            return try call { try agent.waitProcess(container: containerID, exec: execID) }
        }
    }

    public func signal(containerID: String, execID: String, signal: UInt32, all: Bool) async throws {
        try await blocking { [self] in
            let agent = try connectedAgent()
            try call { try agent.signalProcess(container: containerID, exec: execID, signal: signal, all: all) }
        }
    }

    public func exec(containerID: String, execID: String, processJSON: [UInt8], stdio: ShimStdio) async throws {
        try await blocking { [self] in
            let agent = try connectedAgent()
            let opened = try openStdio(stdio, containerID: containerID)
            monitor.withLock { self.stdio[containerID + "/" + execID] = opened }
            try call { try agent.execProcess(container: containerID, exec: execID, processJSON: processJSON, terminal: stdio.terminal) }
        }
    }

    public func resizePty(containerID: String, execID: String, rows: UInt32, columns: UInt32) async throws {
        try await blocking { [self] in
            let agent = try connectedAgent()
            try call { try agent.resizeTerminal(container: containerID, exec: execID, rows: rows, columns: columns) }
        }
    }

    public func closeStdin(containerID: String, execID: String) async throws {
        try await blocking { [self] in
            let exec = execID.isEmpty ? containerID : execID
            // containerd says stdin ended: stop copying and tell the agent.
            monitor.withLock { stdio[containerID + "/" + exec]?.cancel.cancel() }
            let agent = try connectedAgent()
            try call { try agent.closeStdin(container: containerID, exec: exec) }
        }
    }

    public func delete(containerID: String, execID: String) async throws {
        try await blocking { [self] in
            let exec = execID.isEmpty ? containerID : execID
            closeStdio(containerID + "/" + exec)
            guard execID.isEmpty else { return }
            if let agent = monitor.withLock({ agent }) {
                _ = try? agent.removeContainer(containerID, graceSeconds: 5)
            }
            if monitor.withLock({ sandboxID == containerID }) {
                tearDownSandbox()
                for id in monitor.withLock({ Array(mountedRootfs.keys) }) { unmountRootfs(of: id) }
            } else {
                monitor.withLock { backend }?.virtioFS?.unshare(containerID: containerID)
                detachDrive(of: containerID)
                unmountRootfs(of: containerID)
            }
        }
    }

    public func setPaused(containerID: String, _ paused: Bool) async throws {
        try await blocking { [self] in
            let agent = try connectedAgent()
            if paused {
                try call { try agent.pauseContainer(containerID) }
            } else {
                try call { try agent.resumeContainer(containerID) }
            }
        }
    }

    public func update(containerID: String, resourcesJSON: [UInt8]) async throws {
        try await blocking { [self] in
            let agent = try connectedAgent()
            try call { try agent.updateContainer(containerID, resourcesJSON: resourcesJSON) }
        }
    }

    public func stats(containerID: String) async throws -> ShimContainerStats {
        try await blocking { [self] in
            let agent = try connectedAgent()
            let answer = try call { try agent.stats(containerID) }
            var stats = ShimContainerStats()
            stats.cpuUsageMicroseconds = answer.cpu.usageUsec
            stats.cpuUserMicroseconds = answer.cpu.userUsec
            stats.cpuSystemMicroseconds = answer.cpu.systemUsec
            stats.memoryUsageBytes = answer.memory.usageBytes
            stats.memoryLimitBytes = answer.memory.limitBytes
            stats.pids = answer.pids.current
            stats.pidsLimit = answer.pids.limit
            return stats
        }
    }

    public func processes(containerID: String) async throws -> [UInt32] {
        try await blocking { [self] in
            let agent = try connectedAgent()
            return try call { try agent.processes(containerID) }.map { UInt32(bitPattern: $0) }
        }
    }

    public func nextOOMKill() async throws -> String {
        try await blocking { [self] in
            let agent = try connectedAgent()
            // The agent answers when a container's memory.events counts a new oom_kill.
            return try call { try agent.nextOOMKill() }
        }
    }

    public func shutdown() async {
        await (try? blocking { [self] in
            tearDownSandbox()
            for id in monitor.withLock({ Array(mountedRootfs.keys) }) { unmountRootfs(of: id) }
        }) ?? ()
    }

    // MARK: Creating

    private func createBlocking(_ container: ShimContainerSpec) throws -> UInt32 {
        let workload = try translate { try WorkloadSpec.forBundle(container.bundle, command: [], terminal: container.stdio.terminal) }
            .forGuest(configuration)
        let binds = try translate {
            try workload.hostBindMounts(containerID: container.id, sharing: configuration.hypervisor.sharedFileSystem == .virtioFS)
        }
        if monitor.withLock({ sandboxID != nil }) {
            return try createInRunningSandbox(container, workload: workload, binds: binds)
        }
        let rootfs = try prepareRootfs(container, specRootfs: workload.rootfs)
        // Sized once, now (static_sandbox_resource_mgmt): kasa-vmm cannot grow a VM later.
        let size = try translate { try SandboxSizing.size(for: .object(workload.ociSpec), configuration: configuration) }
        var settings = MicroVMBackend.Settings(configuration: configuration, sandboxID: container.id,
                                               memoryMiB: size.memoryMiB, vcpus: size.vcpus)
        settings.containerInitTimeout = MicroVMBackend.Settings.containerInitTimeout(forCallTimeout: callTimeout)
        if workload.ociSpec["annotations"]?["io.kubernetes.cri.container-type"]?.stringValue == "sandbox" {
            settings.driveSlots = KasaShimRuntime.podDriveSlots
        }
        // CRI made the pod's namespace and ran CNI before this Create: its interfaces become the VM's NICs.
        if configuration.runtime.internetworkingModel == .tcFilter, let namespace = workload.networkNamespacePath {
            do {
                settings.network = try translate { try PodNetwork.setUp(namespacePath: namespace, log: log) }
            } catch {
                unmountRootfs(of: container.id)
                throw error
            }
        }
        let backend = MicroVMBackend(settings: settings)
        monitor.withLock {
            self.backend = backend
            sandboxID = container.id
        }
        do {
            let mount = try translate { try backend.launch(rootfs: rootfs) }
            let agent = SandboxAgent(try translate { try backend.connect(deadline: MonotonicClock.now + dialTimeout) },
                                     callTimeout: callTimeout)
            monitor.withLock { self.agent = agent }
            backend.onUnexpectedExit { [log] reason in log("the sandbox stopped: \(reason)") }
            if let network = settings.network {
                try call { try network.configureGuest(agent) }
            }
            try call { try agent.createSandbox(workload.createSandboxRequest(sandboxID: container.id, virtioFS: backend.virtioFS)) }
            try createContainer(container, workload: workload, binds: binds, mount: mount, agent: agent, sharing: backend.virtioFS)
            return UInt32(backend.vmmPID ?? 0)
        } catch {
            tearDownSandbox()
            unmountRootfs(of: container.id)
            throw error
        }
    }

    /// A pod's later container: its rootfs image goes into an empty drive slot of the
    /// running VM, then the agent creates it beside the others.
    private func createInRunningSandbox(_ container: ShimContainerSpec, workload: WorkloadSpec,
                                        binds: HostBindMounts.Plan) throws -> UInt32 {
        guard let (backend, agent) = monitor.withLock({ () -> (MicroVMBackend, SandboxAgent)? in
            guard let backend, let agent else { return nil }
            return (backend, agent)
        }) else {
            throw ShimError(.failedPrecondition, "the pod's VM is not running (its sandbox container is being created or was deleted)")
        }
        guard backend.settings.driveSlots > 0 || backend.virtioFS != nil else {
            throw ShimError(.failedPrecondition,
                            "\(container.id) joins the VM of \(monitor.withLock { sandboxID } ?? "?"), which was not started as a pod sandbox (io.kubernetes.cri.container-type=sandbox): it has no drive slots")
        }
        let rootfs = try prepareRootfs(container, specRootfs: workload.rootfs)
        do {
            let attached = try translate { try backend.attachRootfs(rootfs, containerID: container.id) }
            if let index = attached.driveIndex { monitor.withLock { attachedDrives[container.id] = index } }
            try createContainer(container, workload: workload, binds: binds, mount: attached.mount, agent: agent,
                                sharing: backend.virtioFS)
            return UInt32(backend.vmmPID ?? 0)
        } catch {
            backend.virtioFS?.unshare(containerID: container.id)
            detachDrive(of: container.id)
            unmountRootfs(of: container.id)
            throw error
        }
    }

    private func createContainer(_ container: ShimContainerSpec, workload: WorkloadSpec, binds: HostBindMounts.Plan,
                                 mount: AgentMount, agent: SandboxAgent, sharing export: VirtioFSExport?) throws {
        let key = container.id + "/" + container.id
        do {
            let opened = try openStdio(container.stdio, containerID: container.id)
            monitor.withLock { stdio[key] = opened }
            let copied = try call { try translate { try workload.copying(binds, agent: agent, sharing: export) } }
            try call { try agent.createContainer(copied.createContainerRequest(containerID: container.id, rootfs: mount)) }
        } catch {
            closeStdio(key)
            throw error
        }
    }

    private func detachDrive(of containerID: String) {
        guard let index = monitor.withLock({ attachedDrives.removeValue(forKey: containerID) }),
              let backend = monitor.withLock({ backend }) else { return }
        do {
            try backend.detachRootfs(driveIndex: index)
        } catch {
            log("could not empty drive slot \(index) of \(containerID): \(error)")
        }
    }

    /// containerd's mounts (an overlay of the image's layers, or a bind) are made on the
    /// host at BUNDLE/rootfs, as runc would; the Runtime turns that tree into the VM's
    /// disk image. Without mounts, the spec's root.path is the tree (`ctr run --rootfs`).
    private func prepareRootfs(_ container: ShimContainerSpec, specRootfs: String) throws -> String {
        guard !container.rootfsMounts.isEmpty else { return specRootfs }
        let target = container.bundle + "/rootfs"
        try translate { try HostFile.makeDirectories(target) }
        for mount in container.rootfsMounts {
            let isBind = mount.type == "bind" || mount.options.contains("bind") || mount.options.contains("rbind")
            let flags: UInt = isBind ? UInt(MS_BIND | MS_REC) : 0
            let data = mount.options.filter { !["bind", "rbind", "ro", "rw"].contains($0) }.joined(separator: ",")
            guard Glibc.mount(mount.source, target, isBind ? nil : mount.type, flags, data.isEmpty ? nil : data) == 0 else {
                throw ShimError(.invalidArgument, "mount \(mount.type) \(mount.source) on \(target): \(String(cString: strerror(errno)))")
            }
        }
        monitor.withLock { mountedRootfs[container.id] = target }
        return target
    }

    private func unmountRootfs(of containerID: String) {
        guard let path = monitor.withLock({ mountedRootfs.removeValue(forKey: containerID) }) else { return }
        _ = umount2(path, Int32(MNT_DETACH))
    }

    // MARK: Streams

    /// FIFOs are opened read-write: that never blocks, whoever opened the other end
    /// first, and our end closing is the EOF containerd waits for. `file://PATH` appends
    /// to a file; a `binary://` logger gets stdout and stderr through pipes.
    private func openStdio(_ stdio: ShimStdio, containerID: String) throws -> OpenStdio {
        var opened: [Int32] = []
        func open(_ uri: String) throws -> Int32? {
            guard !uri.isEmpty else { return nil }
            let path = uri.hasPrefix("file://") ? String(uri.dropFirst("file://".count)) : uri
            let flags = uri.hasPrefix("file://") ? (O_WRONLY | O_CREAT | O_APPEND) : O_RDWR
            let descriptor = Glibc.open(path, flags | O_CLOEXEC, 0o640)
            guard descriptor >= 0 else { throw ShimError(.invalidArgument, "cannot open \(path): \(String(cString: strerror(errno)))") }
            opened.append(descriptor)
            return descriptor
        }
        do {
            if BinaryLogger.isLogger(stdio.stdin) {
                throw ShimError(.invalidArgument, "stdin cannot be a binary:// logger")
            }
            let stdin = try open(stdio.stdin)
            if BinaryLogger.isLogger(stdio.stdout) || BinaryLogger.isLogger(stdio.stderr) {
                let logger = try BinaryLogger.start(uri: BinaryLogger.isLogger(stdio.stdout) ? stdio.stdout : stdio.stderr,
                                                    containerID: containerID, namespace: namespace)
                if stdio.terminal { close(logger.stderr) }
                return OpenStdio(stdin: stdin, stdout: logger.stdout, stderr: stdio.terminal ? nil : logger.stderr,
                                 terminal: stdio.terminal)
            }
            return OpenStdio(stdin: stdin, stdout: try open(stdio.stdout),
                             stderr: stdio.terminal ? nil : try open(stdio.stderr), terminal: stdio.terminal)
        } catch {
            opened.forEach { close($0) }
            throw error
        }
    }

    private func startPumps(agent: SandboxAgent, containerID: String, execID: String) {
        guard let opened = monitor.withLock({ () -> OpenStdio? in
            stdio[containerID + "/" + execID]?.pumping = true
            return stdio[containerID + "/" + execID]
        }) else { return }
        if let stdout = opened.stdout {
            StreamPumps.output(.stdout, agent: agent, container: containerID, exec: execID, to: stdout) { close(stdout) }
        }
        if let stderr = opened.stderr {
            StreamPumps.output(.stderr, agent: agent, container: containerID, exec: execID, to: stderr) { close(stderr) }
        }
        if let stdin = opened.stdin {
            StreamPumps.input(agent: agent, container: containerID, exec: execID, from: stdin, cancel: opened.cancel) { close(stdin) }
        }
    }

    /// Once pumping, the pumps close the descriptors when their streams end; before that
    /// (a process deleted without being started) they are closed here, so a FIFO reader
    /// or a logger sees the end.
    private func closeStdio(_ key: String) {
        guard let opened = monitor.withLock({ stdio.removeValue(forKey: key) }) else { return }
        opened.cancel.cancel()
        if !opened.pumping { [opened.stdin, opened.stdout, opened.stderr].compactMap { $0 }.forEach { close($0) } }
    }

    // MARK: Support

    private func tearDownSandbox() {
        let (backend, agent) = monitor.withLock { () -> (MicroVMBackend?, SandboxAgent?) in
            defer { self.backend = nil; self.agent = nil; sandboxID = nil; attachedDrives = [:] }
            return (self.backend, self.agent)
        }
        agent?.close()
        backend?.tearDown()
    }

    private func connectedAgent() throws -> SandboxAgent {
        guard let agent = monitor.withLock({ agent }) else { throw ShimError(.failedPrecondition, "the sandbox is not running") }
        return agent
    }

    @discardableResult
    private func call<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as TTRPCCallError {
            switch error.code {
            case .notFound: throw ShimError(.notFound, error.message)
            case .invalidArgument: throw ShimError(.invalidArgument, error.message)
            case .failedPrecondition: throw ShimError(.failedPrecondition, error.message)
            case .unimplemented, .unavailable: throw ShimError(.unimplemented, "the agent: \(error.message)")
            default: throw ShimError(.internalError, "the agent: \(error)")
            }
        }
    }

    private func translate<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as RuntimeError {
            switch error {
            case .invalidInput, .configuration: throw ShimError(.invalidArgument, error.description)
            default: throw ShimError(.internalError, error.description)
            }
        }
    }
}

/// Runs blocking work on a thread of its own and awaits it.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DetachedThread.start { continuation.resume(with: Result { try body() }) }
    }
}

import AgentProtocol
import HostOS
import Netlink
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// A VM template (Kata's `[factory] enable_template`): a VM booted once with the
/// configured kernel, agent image, size, empty drive slots, a NIC slot when pods have
/// networks and a virtio-fs device when `shared_fs` is virtio-fs, saved by kasa-vmm's
/// snapshot once its agent answers. Sandboxes are then restored from it (copy-on-write
/// memory: they share its pages until they write) instead of booting a kernel.
///
/// The directory (`template_path`) holds the snapshot (`state`, `memory`), `inputs` (what
/// it was built from, one `key=value` per line: a template whose inputs no longer match
/// the configuration is rebuilt) and `lock` (builders wait for each other on it).
public struct VMTemplate: Sendable {
    public let path: String

    /// The empty drive slots every template VM has: a sandbox's first rootfs goes into one,
    /// a pod's later containers into the others.
    public static let driveSlots = 8
    /// A template's NIC slot (when pods have networks: `internetworking_model` is not
    /// "none"): an unplugged virtio-net NIC with this MAC and MTU, which a clone's
    /// kasa-vmm connects to the pod's TAP and the agent gives the pod interface's MAC.
    /// A pod with more interfaces, or a larger MTU (virtio-net's limit is the MTU the
    /// device offered at boot), boots instead.
    public static let nicMAC: [UInt8] = [0x02, 0x4B, 0x41, 0x53, 0x41, 0x00]
    public static let nicMTU: UInt32 = 1500
    /// How long the template's snapshot may wait for the guest to close the agent's
    /// connection (seconds; the guest kernel is emulated on kvm_pvm).
    static let settleSeconds = 30

    public init(path: String) { self.path = path }

    var inputsPath: String { path + "/inputs" }
    var lockPath: String { path + "/lock" }
    var buildDirectory: String { path + "/build" }

    public enum Status: Sendable, Equatable {
        case absent
        /// Built from these inputs, which match the configuration.
        case ready(inputs: [String])
        /// Built from `inputs`; the configuration now differs in `changed` (keys).
        case stale(inputs: [String], changed: [String])
    }

    /// The settings a template VM is built with: a sandbox's, made canonical, so that
    /// `kata-runtime run` and the shim share one template.
    static func canonical(_ settings: MicroVMBackend.Settings) -> MicroVMBackend.Settings {
        var template = settings
        template.consoleToStandardError = false
        template.containerInitTimeout = MicroVMBackend.Settings.containerInitTimeout(
            forCallTimeout: RuntimeConfiguration.agentCallTimeout(onPVMHost: KVMSystem.isPVMHost))
        template.memoryMiB = settings.defaultMemoryMiB
        template.vcpus = settings.defaultVCPUs
        template.driveSlots = driveSlots
        template.network = nil
        return template
    }

    /// What a template built for `settings` depends on: every file by path, size and
    /// modification time, the guest command line, the size and the drive slots.
    static func inputs(for settings: MicroVMBackend.Settings) -> [String] {
        let template = canonical(settings)
        func file(_ path: String) -> String {
            var status = stat()
            guard !path.isEmpty, stat(path, &status) == 0 else { return path + " (missing)" }
            return "\(path) size \(status.st_size) mtime \(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)"
        }
        return [
            "kasa-vmm=" + file(template.vmmPath),
            "kernel=" + file(template.kernel),
            (template.image.isEmpty ? "initrd=" + file(template.initrd) : "image=" + file(template.image)),
            "cmdline=" + MicroVMBackend.kernelCommandLine(template),
            "memory_mib=\(template.memoryMiB)",
            "vcpus=\(template.vcpus)",
            "drive_slots=\(driveSlots)",
            "nic_slots=\(template.templateNICSlots)",
            "shared_dirs=\(template.virtioFS == nil ? 0 : 1)",
        ]
    }

    public func status(for settings: MicroVMBackend.Settings) -> Status {
        guard HostFile.exists(path + "/state"), HostFile.exists(path + "/memory"),
              let text = HostFile.readText(inputsPath) else { return .absent }
        let recorded = text.split(separator: "\n").map(String.init)
        let wanted = VMTemplate.inputs(for: settings)
        if recorded == wanted { return .ready(inputs: recorded) }
        let key = { (line: String) in String(line.prefix { $0 != "=" }) }
        let changed = Set(wanted).symmetricDifference(recorded).map(key)
        return .stale(inputs: recorded, changed: Array(Set(changed)).sorted())
    }

    /// The snapshot directory of a template that matches `settings`, built first when it
    /// is absent or stale. Concurrent callers (shims starting pods at once) wait for one
    /// build instead of making two.
    public func ensure(for settings: MicroVMBackend.Settings) throws(RuntimeError) -> String {
        try HostFile.makeDirectories(path, mode: 0o700)
        let lock = try Self.lock(lockPath)
        defer { close(lock) }
        if case .ready = status(for: settings) { return path }
        try build(for: settings)
        return path
    }

    /// Boots the template VM, waits for its agent, saves it, and stops it.
    public func build(for settings: MicroVMBackend.Settings) throws(RuntimeError) {
        let template = VMTemplate.canonical(settings)
        try MicroVMBackend.checkBootFiles(template)
        HostFile.removeTree(buildDirectory)
        try HostFile.makeDirectories(buildDirectory, mode: 0o700)
        defer { HostFile.removeTree(buildDirectory) }
        // Removed first: a half-replaced template must never look ready.
        unlink(inputsPath)
        // kasa-vmm writes its snapshot into a directory of its own, its user's when it has
        // one (`vmm_user`); the files become root's and move into the template only once
        // that VMM is gone, so no later VMM of the same user can change what every clone
        // starts from.
        let user = try template.jailedUser()
        HostFile.removeTree(snapshotDirectory)
        try HostFile.makeDirectories(snapshotDirectory, mode: 0o700)
        defer { HostFile.removeTree(snapshotDirectory) }
        if let user, chown(snapshotDirectory, user.uid, user.gid) != 0 {
            throw RuntimeError.host("cannot give \(snapshotDirectory) to kasa-vmm's user: \(HostFile.lastErrorDescription())")
        }
        try saveTemplateVM(template, settings: settings)
        for name in ["state", "memory"] { try adopt(name) }
        try HostFile.write(Array((VMTemplate.inputs(for: settings).joined(separator: "\n") + "\n").utf8), to: inputsPath, mode: 0o600)
    }

    /// Where the template VM writes its snapshot: beside the build directory, not in it,
    /// so that in the jail (where only these two are bound) the VMM's user reaches it
    /// through the jail's own directories, not through the root-only build directory.
    var snapshotDirectory: String { path + "/saving" }

    /// Moves the snapshot's file `name` from `snapshotDirectory` into the template, made
    /// root's and 0600. Its writer may have been hostile: only a regular file with one link
    /// is taken, opened without following a symbolic link.
    func adopt(_ name: String) throws(RuntimeError) {
        let source = snapshotDirectory + "/" + name
        let descriptor = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw RuntimeError.sandbox("the template VM's snapshot has no usable \(name): \(HostFile.lastErrorDescription())") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_nlink == 1 else {
            throw RuntimeError.sandbox("the template VM's snapshot file \(name) is not a plain file of its own")
        }
        guard fchown(descriptor, 0, 0) == 0, fchmod(descriptor, 0o600) == 0 else {
            throw RuntimeError.host("cannot make \(source) root's: \(HostFile.lastErrorDescription())")
        }
        guard rename(source, path + "/" + name) == 0 else {
            throw RuntimeError.host("cannot move \(source) into the template: \(HostFile.lastErrorDescription())")
        }
    }

    /// Boots the template VM, waits for its agent and has it saved into
    /// `snapshotDirectory`; the VM is stopped and waited for when this returns.
    private func saveTemplateVM(_ template: MicroVMBackend.Settings, settings: MicroVMBackend.Settings) throws(RuntimeError) {
        let socket = buildDirectory + "/vsock.sock", api = buildDirectory + "/api.sock"
        let console = buildDirectory + "/console.log", log = buildDirectory + "/kasa-vmm.log"
        let arguments = MicroVMBackend.bootArguments(template, vsockSocket: socket, controlSocket: api)
            + VMTemplate.nicArguments(template.templateNICSlots)
            + (try sharedDirectoryArguments(template))
            + (try template.confinementArguments(jail: buildDirectory + "/jail", writable: [snapshotDirectory]))
            + ["--no-stdin", "--parent-pid", String(getpid()), "--console", console]
        var placement = template.vmmPlacement
        let cgroup = try template.cgroupHierarchy.map { (hierarchy) throws(RuntimeError) in
            try SandboxCgroup.make(sandboxID: "template", stateDirectory: buildDirectory, hierarchy: hierarchy)
        }
        placement.cgroup = cgroup?.path
        defer { cgroup?.remove() }
        let child = try ChildProcess(template.vmmPath, arguments, stdin: .null, stdout: .null, stderr: .file(log),
                                     placement: placement, parentDeathSignal: SIGKILL)
        defer {
            child.signal(SIGKILL)
            _ = child.wait(timeout: 10)
        }
        let detail = { "\n--- kasa-vmm ---\n" + HostFile.tail(log, bytes: 2000) + "\n--- guest console ---\n" + HostFile.tail(console, bytes: 2000) }
        let client = try MicroVMBackend.dialAgent(socketPath: socket, deadline: MonotonicClock.now + settings.dialTimeout) { () throws(RuntimeError) in
            if child.wait(timeout: 0) != nil { throw RuntimeError.sandbox("the template VM stopped before its agent answered\(detail())") }
        }
        do {
            // One round trip: the agent's ttrpc path is paged in and warm in the snapshot.
            _ = try SandboxAgent(client, callTimeout: 60).health()
        } catch {
            client.connection.close()
            throw RuntimeError.sandbox("the template VM's agent did not answer: \(error)\(detail())")
        }
        client.connection.close()
        // kasa-vmm saves no open vsock connection: the one just closed must be gone in the
        // guest too (its reset takes a moment on kvm_pvm, where the guest kernel is
        // emulated); kasa-vmm waits for that, up to settleSeconds.
        do {
            try VMMControlClient(socketPath: api, timeout: 120).snapshot(to: snapshotDirectory, settleSeconds: VMTemplate.settleSeconds)
        } catch {
            throw RuntimeError.sandbox("saving the template VM: \(error)\(detail())")
        }
        // Its files are taken only from a VMM that is gone (reaped): none of its threads
        // can change them between the checks and the move.
        child.signal(SIGKILL)
        guard child.wait(timeout: 30) != nil else {
            throw RuntimeError.sandbox("the template VM did not stop within 30 s of SIGKILL: its snapshot is not used")
        }
    }

    /// With `shared_fs = "virtio-fs"`, the template VM has the sandboxes' virtio-fs device
    /// (Kata's tag), serving an empty directory of its own: its guest probes the device but
    /// never mounts it (the agent mounts each clone's at CreateSandbox), so the snapshot
    /// holds no host file and every clone's kasa-vmm serves that sandbox's directory.
    private func sharedDirectoryArguments(_ template: MicroVMBackend.Settings) throws(RuntimeError) -> [String] {
        guard let sandboxExport = template.virtioFS else { return [] }
        let export = VirtioFSExport(stateDirectory: buildDirectory, cache: sandboxExport.cache)
        try HostFile.makeDirectories(export.hostDirectory, mode: 0o700)
        return export.vmmArguments
    }

    /// kasa-vmm's `--net` for the template's unplugged NIC slots.
    static func nicArguments(_ slots: Int) -> [String] {
        (0..<slots).flatMap { _ in ["--net", "unplugged,mac=\(NetworkText.mac(nicMAC)),mtu=\(nicMTU)"] }
    }

    /// Removes the template (waiting for a build in progress to finish).
    public func destroy() throws(RuntimeError) {
        guard HostFile.isDirectory(path) else { return }
        let lock = try Self.lock(lockPath)
        for name in ["state", "memory", "inputs", "state.partial", "memory.partial"] { unlink(path + "/" + name) }
        HostFile.removeTree(buildDirectory)
        HostFile.removeTree(snapshotDirectory)
        unlink(lockPath)
        close(lock)
        guard rmdir(path) == 0 || errno == ENOENT else {
            throw RuntimeError.host("cannot remove \(path): \(HostFile.lastErrorDescription()) (it holds files Kasa did not put there)")
        }
    }

    /// Gives a VM restored from the template what must be its own before any workload
    /// runs: 64 bytes of the host's randomness mixed into its pool and its CRNG reseeded
    /// (no two clones may draw the same numbers), and the host's time on its clock (the
    /// template's clock stood still while it was saved).
    static func makeUnique(_ client: AgentClient) throws(RuntimeError) {
        var generator = SystemRandomNumberGenerator()
        let seed = (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let agent = SandboxAgent(client, callTimeout: 30)
        do {
            try agent.reseedRandom(seed)
            try agent.setGuestTime(seconds: Int64(now.tv_sec), microseconds: Int64(now.tv_nsec / 1000))
        } catch {
            throw RuntimeError.sandbox("making the VM restored from the template unique (entropy, clock): \(error)")
        }
    }

    /// An exclusive flock on `path` (created 0600); close the descriptor to release it.
    static func lock(_ path: String) throws(RuntimeError) -> Int32 {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw RuntimeError.host("cannot open the template lock \(path): \(HostFile.lastErrorDescription())") }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let problem = HostFile.lastErrorDescription()
                close(descriptor)
                throw RuntimeError.host("cannot lock \(path): \(problem)")
            }
        }
        return descriptor
    }
}

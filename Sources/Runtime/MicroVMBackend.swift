import AgentProtocol
import HostOS
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox in its own microVM: kasa-vmm with the guest kernel, the agent's read-only
/// root disk (/dev/vda, /init = kata-agent; or an initrd), the container's rootfs image
/// read-only on virtio-blk (/dev/vdb), an rng, and vsock bridged to a Unix socket in the
/// sandbox's state directory.
public final class MicroVMBackend: SandboxBackend, @unchecked Sendable {
    public struct Settings: Sendable {
        public var vmmPath: String
        public var kernel: String
        /// The agent's root disk ("" = boot `initrd`).
        public var image: String
        public var initrd: String
        public var extraKernelParameters: String
        /// The sandbox's id: its first container's (the rootfs drive's serial comes from it).
        public var sandboxID: String
        public var memoryMiB: Int
        public var vcpus: Int
        /// The sandbox's own directory (created here, removed by tearDown).
        public var stateDirectory: String
        public var imageCache: RootfsImageCache
        /// Console (kernel and agent log) to this process's stderr instead of a file.
        public var consoleToStandardError: Bool
        public var debugConsole: Bool
        /// Empty drive slots for rootfs images attached later (`attachRootfs`): a pod's
        /// containers after the first. 0 = no control socket either.
        public var driveSlots = 0
        /// The agent's limit on one container's set-up and exec, in seconds
        /// (`agent.container_init_timeout`; nil: the agent's 30). Set below the host's own
        /// call timeout, so that the agent's precise error arrives before the host gives up.
        public var containerInitTimeout: Int?
        /// The pod's network: its TAPs become the VM's NICs (passed to kasa-vmm as fds).
        public var network: PodNetwork?
        /// `[factory] template_path` when `enable_template` is on: the VM is restored from
        /// the template's snapshot (built first if missing or stale) when it can be (the
        /// configured size, no network interfaces); else it boots.
        public var templatePath: String?
        /// The template's NIC slots: 1 where pods get networks (`internetworking_model`
        /// is not "none"), else 0.
        public var templateNICSlots: Int
        /// The shared directory kasa-vmm serves over virtio-fs (`shared_fs = "virtio-fs"`).
        public var virtioFS: VirtioFSExport?
        /// `disable_seccomp`: kasa-vmm without its thread filters.
        public var disableSeccomp = false
        /// `enable_jail`: kasa-vmm in a mount jail of its own.
        public var enableJail = true
        /// `vmm_user`: who a jailed kasa-vmm runs as after set-up.
        public var vmmUser = VMMUser.defaultName
        /// `sandbox_cgroup_only` on a host with cgroup v2: its hierarchy, where each
        /// kasa-vmm gets a cgroup of its own (nil: the runtime's cgroup).
        public var cgroupHierarchy: String?

        /// What every kasa-vmm this runtime starts (sandbox, restore, template build) is given
        /// about its confinement: its jail's root (`jail`, made here, empty: kasa-vmm's tmpfs
        /// goes on it in its own namespace only) and what the jail must keep beyond the
        /// paths on its command line: `writable` directories it will write into (a
        /// template's snapshot directory; what it reads later comes as descriptors); the
        /// filters unless disabled; the user it becomes after set-up (`vmm_user`).
        public func confinementArguments(jail: String, writable: [String] = []) throws(RuntimeError) -> [String] {
            var arguments = disableSeccomp ? ["--seccomp", "off"] : []
            guard enableJail else { return arguments }
            try HostFile.makeDirectories(jail, mode: 0o700)
            arguments += ["--jail", jail]
            if let user = try jailedUser() { arguments += ["--user", "\(user.uid):\(user.gid)"] }
            arguments += writable.flatMap { ["--jail-path-writable", $0] }
            return arguments
        }

        /// The user a jailed kasa-vmm becomes (`vmm_user`); nil without the jail (kasa-vmm
        /// then reaches the runtime's directories by their host paths, which only root may
        /// walk), with `disable_seccomp`, or when the user is root.
        public func jailedUser() throws(RuntimeError) -> (uid: UInt32, gid: UInt32)? {
            // Without the filters nothing drops the capabilities set-up keeps: the user
            // would be a name only (kasa-vmm refuses --user with --seccomp off).
            guard enableJail, !disableSeccomp else { return nil }
            return try VMMUser.resolve(vmmUser)
        }

        /// Where every kasa-vmm this runtime starts runs, with the jail: a PID namespace of
        /// its own (its /proc shows itself alone; it can signal nothing else) and an empty
        /// network namespace (its TAPs come as descriptors, its sockets are Unix sockets by
        /// path: it needs no network of the host or the pod).
        public var vmmPlacement: ChildProcess.Placement {
            enableJail ? ChildProcess.Placement(newPIDNamespace: true, newNetworkNamespace: true) : ChildProcess.Placement()
        }

        /// The agent's container set-up limit for a host that waits `callTimeout` seconds for
        /// each agent call: three quarters of it.
        public static func containerInitTimeout(forCallTimeout callTimeout: Double) -> Int {
            max(1, Int(callTimeout * 3 / 4))
        }

        public init(configuration: RuntimeConfiguration, sandboxID: String, memoryMiB: Int? = nil, vcpus: Int? = nil) {
            vmmPath = configuration.hypervisor.path
            kernel = configuration.hypervisor.kernel
            image = configuration.hypervisor.image
            initrd = configuration.hypervisor.initrd
            extraKernelParameters = configuration.hypervisor.kernelParams
            self.sandboxID = sandboxID
            self.memoryMiB = memoryMiB ?? configuration.hypervisor.defaultMemoryMiB
            self.vcpus = vcpus ?? configuration.hypervisor.defaultVCPUs
            stateDirectory = configuration.runtime.sandboxDirectory(for: sandboxID)
            imageCache = RootfsImageCache(directory: configuration.runtime.imageCacheDirectory)
            consoleToStandardError = configuration.runtime.enableDebug
            debugConsole = configuration.agent.debugConsoleEnabled
            templatePath = configuration.factory.enableTemplate ? configuration.templateDirectory : nil
            templateNICSlots = configuration.runtime.internetworkingModel == .none ? 0 : 1
            if configuration.hypervisor.sharedFileSystem == .virtioFS {
                virtioFS = VirtioFSExport(stateDirectory: stateDirectory, cache: configuration.hypervisor.virtioFSCache)
            }
            disableSeccomp = configuration.hypervisor.disableSeccomp
            enableJail = configuration.hypervisor.enableJail
            vmmUser = configuration.hypervisor.vmmUser
            cgroupHierarchy = configuration.runtime.sandboxCgroupOnly ? SandboxCgroup.unifiedHierarchy() : nil
            defaultMemoryMiB = configuration.hypervisor.defaultMemoryMiB
            defaultVCPUs = configuration.hypervisor.defaultVCPUs
            dialTimeout = Double(configuration.effectiveDialTimeout(onPVMHost: KVMSystem.isPVMHost))
        }

        /// The configured size, which the template has.
        public var defaultMemoryMiB: Int
        public var defaultVCPUs: Int
        /// Seconds to wait for a template VM's agent.
        public var dialTimeout: Double

        /// Why this sandbox cannot start from the template (nil: it can).
        var templateObstacle: String? {
            guard templatePath != nil else { return "templates are off" }
            if let network {
                if network.interfaces.count > templateNICSlots {
                    return "the pod has \(network.interfaces.count) network interfaces, the template \(templateNICSlots)"
                }
                if let large = network.interfaces.first(where: { $0.mtu > VMTemplate.nicMTU }) {
                    return "the pod interface \(large.name) has MTU \(large.mtu), the template's NIC at most \(VMTemplate.nicMTU)"
                }
            }
            if memoryMiB != defaultMemoryMiB || vcpus != defaultVCPUs {
                return "the sandbox asks for \(memoryMiB) MiB and \(vcpus) vCPUs, the template has \(defaultMemoryMiB) MiB and \(defaultVCPUs)"
            }
            return nil
        }
    }

    public private(set) var settings: Settings
    /// The running VM was restored from the template: it gets fresh entropy and the time
    /// before anything else (`connect`).
    private var restoredFromTemplate = false
    public var network: PodNetwork? { settings.network }
    public var virtioFS: VirtioFSExport? { settings.virtioFS }
    public var socketPath: String { settings.stateDirectory + "/vsock.sock" }
    public var consoleLogPath: String { settings.stateDirectory + "/console.log" }
    /// kasa-vmm's pid, written at launch.
    public var vmmPIDPath: String { settings.stateDirectory + "/kasa-vmm.pid" }
    /// The running kasa-vmm's pid, if any.
    public var vmmPID: Int32? { lifecycle.process?.pid }
    /// kasa-vmm's control socket (drive slots), when `driveSlots` > 0.
    public var controlSocketPath: String { settings.stateDirectory + "/api.sock" }
    /// kasa-vmm's own messages (its stderr).
    public var vmmLogPath: String { settings.stateDirectory + "/kasa-vmm.log" }
    /// The image the last launch attached, and whether the cache already had it.
    public private(set) var rootfsImage: RootfsImageCache.Image?

    private let lifecycle = BackendLifecycle()

    public init(settings: Settings) { self.settings = settings }

    /// The guest command line: the console, no reboot on panic loops, and `quiet` unless
    /// debugging (on kvm_pvm every console byte is a VM exit). kasa-vmm adds the virtio
    /// and PVM parameters itself.
    var kernelCommandLine: String { MicroVMBackend.kernelCommandLine(settings) }

    static func kernelCommandLine(_ settings: Settings) -> String {
        var words = ["console=ttyS0", "reboot=k", "panic=-1"]
        if !settings.image.isEmpty {
            // kasa-vmm adds root=/dev/vda ro for the root drive.
            words += ["rootfstype=ext4", "init=/init"]
        }
        if !settings.consoleToStandardError { words.append("quiet") }
        if settings.debugConsole { words.append("agent.debug_console") }
        if let seconds = settings.containerInitTimeout { words.append("agent.container_init_timeout=\(seconds)") }
        if !settings.extraKernelParameters.isEmpty { words.append(settings.extraKernelParameters) }
        return words.joined(separator: " ")
    }

    /// What booting `settings` needs: kasa-vmm, the guest kernel, the agent's image or initrd.
    static func checkBootFiles(_ settings: Settings) throws(RuntimeError) {
        let bootsImage = !settings.image.isEmpty
        for (role, path, fix) in [("kasa-vmm", settings.vmmPath, "[hypervisor.kasa] path"),
                                  ("guest kernel", settings.kernel, "[hypervisor.kasa] kernel"),
                                  bootsImage ? ("agent image", settings.image, "[hypervisor.kasa] image")
                                             : ("agent initrd", settings.initrd, "[hypervisor.kasa] initrd")]
            where !HostFile.exists(path) {
            throw RuntimeError.host("the \(role) \(path) does not exist: run scripts/install.sh, or set \(fix) in configuration.toml")
        }
    }

    /// kasa-vmm's arguments for booting `settings`' kernel with the agent's own disk first
    /// (the root, /dev/vda; or its initrd), an rng, vsock at `vsockSocket`, and the drive
    /// slots with their control socket. A sandbox adds its rootfs drive and NICs; a
    /// template is exactly this.
    static func bootArguments(_ settings: Settings, vsockSocket: String, controlSocket: String) -> [String] {
        let boot = settings.image.isEmpty ? ["--initrd", settings.initrd] : ["--drive", "path=\(settings.image),readonly=on,root=on"]
        var arguments = ["--kernel", settings.kernel] + boot + [
            "--cmdline", kernelCommandLine(settings),
            "--memory", String(settings.memoryMiB), "--vcpus", String(settings.vcpus), "--rng",
            "--vsock-uds", vsockSocket, "--vsock-cid", "3",
        ]
        if settings.driveSlots > 0 {
            arguments += ["--drive-slots", String(settings.driveSlots), "--api-socket", controlSocket]
        }
        return arguments
    }

    public func launch(rootfs: String) throws(RuntimeError) -> AgentMount {
        try MicroVMBackend.checkBootFiles(settings)
        if let export = settings.virtioFS {
            // The rootfs bound into the shared directory: no image is built, nothing is hashed.
            try HostFile.makeDirectories(settings.stateDirectory, mode: 0o700)
            try export.prepare()
            let mount = try export.shareRootfs(rootfs, containerID: settings.sandboxID)
            if settings.templateObstacle == nil, let templatePath = settings.templatePath {
                // The template's virtio-fs device, which its guest has not mounted, serves
                // this sandbox's shared directory; the agent mounts it at CreateSandbox.
                try restore(fromTemplate: templatePath, adding: export.vmmArguments)
            } else {
                try boot(adding: export.vmmArguments)
            }
            return mount
        }
        let image = try settings.imageCache.image(for: rootfs)
        rootfsImage = image
        try HostFile.makeDirectories(settings.stateDirectory, mode: 0o700)
        if settings.templateObstacle == nil, let templatePath = settings.templatePath {
            try restore(fromTemplate: templatePath, adding: [])
            let serial = MicroVMBackend.driveSerial(forContainer: settings.sandboxID)
            _ = try VMMControlClient(socketPath: controlSocketPath).attachDrive(path: image.path, serial: serial)
            return MicroVMBackend.rootfsMount(serial: serial)
        }
        // The container's rootfs is the drive after the agent's own disk (kasa-vmm puts the
        // drive slots after every drive).
        let rootfsDrive = MicroVMBackend.driveSerial(forContainer: settings.sandboxID)
        try boot(adding: ["--drive", "path=\(image.path),readonly=on,id=\(rootfsDrive)"])
        return MicroVMBackend.rootfsMount(serial: rootfsDrive)
    }

    /// A cold boot: what every sandbox's kasa-vmm gets, `rootfsArguments` (how the
    /// container's rootfs reaches the VM), then the pod's NICs.
    private func boot(adding rootfsArguments: [String]) throws(RuntimeError) {
        var arguments = MicroVMBackend.bootArguments(settings, vsockSocket: socketPath, controlSocket: controlSocketPath)
            + rootfsArguments
        // The TAPs become kasa-vmm's descriptors 3, 4, ... (ChildProcess `passing`).
        let taps = settings.network?.tapDescriptors ?? []
        if let network = settings.network { arguments += network.vmmArguments(firstDescriptor: 3) }
        try spawnVMM(arguments, passing: taps)
    }

    /// The VM restored from the template (built first if it must be), with the clone's own
    /// host ends: its vsock and control sockets, its TAPs, and `arguments` (the shared
    /// directory); returns once kasa-vmm's control socket is there.
    private func restore(fromTemplate templatePath: String, adding arguments: [String]) throws(RuntimeError) {
        let snapshot = try VMTemplate(path: templatePath).ensure(for: settings)
        settings.driveSlots = VMTemplate.driveSlots
        restoredFromTemplate = true
        // The template's NIC slots in order: the pod's TAPs (kasa-vmm's descriptors 3, 4,
        // ...), unplugged where the pod has fewer interfaces (or no network).
        let taps = settings.network?.tapDescriptors ?? []
        let nics = (0..<settings.templateNICSlots).flatMap { slot in
            ["--net", slot < taps.count ? "fd=\(3 + slot)" : "unplugged"]
        }
        settings.network?.restoredFromTemplate(nicMAC: VMTemplate.nicMAC)
        try spawnVMM(["--restore", snapshot, "--vsock-uds", socketPath, "--api-socket", controlSocketPath] + nics + arguments,
                     passing: taps)
        // kasa-vmm binds its control socket before the guest runs; wait for the file.
        let deadline = MonotonicClock.now + 30
        while !HostFile.exists(controlSocketPath) {
            if let failure { throw RuntimeError.sandbox("the VM restored from \(templatePath) stopped: \(failure)\(failureDetail)") }
            guard MonotonicClock.now < deadline else { throw RuntimeError.sandbox("kasa-vmm did not open its control socket \(controlSocketPath)") }
            usleep(5_000)
        }
    }

    /// Starts kasa-vmm with `arguments` plus what every sandbox's has (no stdin, dies with
    /// this process, the console to the log or stderr), records its pid for `delete`, and
    /// hands it to the lifecycle.
    private func spawnVMM(_ arguments: [String], passing taps: [Int32]) throws(RuntimeError) {
        // Drives for slots come as descriptors (VMMControlClient.attachDrive): the image
        // cache, every pod's images, stays out of the jail.
        let confinement = try settings.confinementArguments(jail: settings.stateDirectory + "/jail")
        let all = arguments + confinement + ["--no-stdin", "--parent-pid", String(getpid()),
                               "--console", settings.consoleToStandardError ? "/dev/stderr" : consoleLogPath]
        var placement = settings.vmmPlacement
        let cgroup = try settings.cgroupHierarchy.map { (hierarchy) throws(RuntimeError) in
            try SandboxCgroup.make(sandboxID: settings.sandboxID, stateDirectory: settings.stateDirectory, hierarchy: hierarchy)
        }
        placement.cgroup = cgroup?.path
        let child: ChildProcess
        do {
            child = try ChildProcess(settings.vmmPath, all, stdin: .null, stdout: .null,
                                     stderr: settings.consoleToStandardError ? .inherit : .file(vmmLogPath), passing: taps,
                                     placement: placement, parentDeathSignal: SIGKILL)
        } catch {
            cgroup?.remove()
            throw error
        }
        // The cgroup goes with the VMM, however it ends.
        if let cgroup { child.onExit { _ in cgroup.remove() } }
        // kasa-vmm holds the TAPs now: when it goes, they go.
        settings.network?.closeDescriptors()
        // For whoever cleans up after this process dies (the shim's `delete` command). A
        // state directory that cannot take these few bytes (its disk full) cannot keep the
        // sandbox's logs or its cleanup record either: the sandbox stops here, with why.
        do {
            try HostFile.write(Array("\(child.pid)\n".utf8), to: vmmPIDPath)
        } catch {
            child.signal(SIGKILL)
            child.wait(timeout: 10)
            throw RuntimeError.host("the sandbox cannot keep its state: \(error)")
        }
        // A guest whose kernel panicked resets (panic=-1) and kasa-vmm ends with status 0 as
        // for any reset: its console names the panic. Any other end (a signal, an error)
        // is kasa-vmm's own, whatever the console says.
        let console = settings.consoleToStandardError ? nil : consoleLogPath
        guard lifecycle.adopt(child, name: "kasa-vmm", explain: { status in
            status == 0 ? console.flatMap(GuestCrash.describe(consolePath:)) : nil
        }) else {
            // Torn down (Ctrl-C) while this was starting: do not leave the VMM behind.
            child.signal(SIGKILL)
            throw RuntimeError.sandbox("stopped while starting")
        }
    }

    /// The virtio-blk serial (GET_ID, at most 20 bytes) of a container's rootfs drive:
    /// the agent finds the disk by it, so the runtime never guesses the guest's vdX order,
    /// and a refilled drive slot never passes for the container it held before.
    static func driveSerial(forContainer id: String) -> String {
        "kasa-" + ContentHash.hexDigest(of: id).prefix(15)
    }

    /// A rootfs image as the agent mounts it: read-only ext4 (the agent adds the overlay),
    /// named the way udev names a virtio disk by its serial (the agent resolves the name
    /// itself when no udev made the link).
    static func rootfsMount(serial: String) -> AgentMount {
        var mount = AgentMount()
        mount.source = "/dev/disk/by-id/virtio-" + serial
        mount.type = "ext4"
        mount.options = ["ro"]
        return mount
    }

    /// Turns `rootfs` into its image (cached) and puts it in one of the running VM's empty
    /// drive slots; the mount tells the agent where the guest finds it.
    /// With a shared directory the rootfs is bound into it instead (no drive: nil).
    public func attachRootfs(_ rootfs: String, containerID: String) throws(RuntimeError) -> (mount: AgentMount, driveIndex: Int?) {
        guard lifecycle.process != nil, failure == nil else { throw RuntimeError.sandbox("the sandbox's VM is not running") }
        if let export = settings.virtioFS { return (try export.shareRootfs(rootfs, containerID: containerID), nil) }
        guard settings.driveSlots > 0 else { throw RuntimeError.sandbox("this sandbox was started without drive slots") }
        guard lifecycle.process != nil, failure == nil else { throw RuntimeError.sandbox("the sandbox's VM is not running") }
        let image = try settings.imageCache.image(for: rootfs)
        let serial = MicroVMBackend.driveSerial(forContainer: containerID)
        let drive = try VMMControlClient(socketPath: controlSocketPath).attachDrive(path: image.path, serial: serial)
        return (MicroVMBackend.rootfsMount(serial: serial), drive.index)
    }

    /// Empties a drive slot `attachRootfs` filled (after the agent unmounted it).
    public func detachRootfs(driveIndex: Int) throws(RuntimeError) {
        try VMMControlClient(socketPath: controlSocketPath).detachDrive(index: driveIndex)
    }

    public func connect(deadline: Double) throws(RuntimeError) -> AgentClient {
        let client: AgentClient
        do {
            client = try MicroVMBackend.dialAgent(socketPath: socketPath, deadline: deadline) { () throws(RuntimeError) in
                if lifecycle.isTearingDown { throw RuntimeError.sandbox("stopped while connecting") }
                if let failure { throw RuntimeError.sandbox("the VM stopped before its agent answered: \(failure)\(failureDetail)") }
            }
        } catch {
            if case .sandbox(let message) = error, message.hasPrefix("the agent did not answer") {
                throw RuntimeError.sandbox(message + failureDetail)
            }
            throw error
        }
        if restoredFromTemplate {
            do {
                try VMTemplate.makeUnique(client)
            } catch {
                client.connection.close()
                throw error
            }
        }
        return client
    }

    /// Dials the agent through kasa-vmm's vsock bridge until it answers or `deadline`
    /// passes; `check` runs before every attempt and throws to give up early.
    static func dialAgent(socketPath: String, deadline: Double,
                          check: () throws(RuntimeError) -> Void) throws(RuntimeError) -> AgentClient {
        var attempts = 0
        var lastProblem = "no attempt"
        while MonotonicClock.now < deadline {
            try check()
            attempts += 1
            switch UnixStream.connect(socketPath) {
            case .failure(let error):
                // The bridge's socket appears when the guest driver activates the device.
                lastProblem = "connect \(socketPath): \(error)"
            case .success(let descriptor):
                _ = DescriptorIO.writeAll(descriptor, Array("CONNECT \(AgentService.vsockPort)\n".utf8))
                let reply = UnixStream.readLine(descriptor, timeout: max(0.1, min(30, deadline - MonotonicClock.now)))
                if let reply, reply.hasPrefix("OK ") {
                    return AgentClient(connection: TTRPCClient(descriptor: descriptor))
                }
                close(descriptor)
                // No agent on the port yet: the guest resets the stream and we retry.
                lastProblem = reply.map { "unexpected reply \($0.debugDescription)" } ?? "the guest refused vsock port \(AgentService.vsockPort)"
            }
            usleep(100_000)
        }
        throw RuntimeError.sandbox("the agent did not answer within the dial timeout (\(attempts) attempts, last: \(lastProblem))")
    }

    public var failure: String? { lifecycle.failure }

    public func onUnexpectedExit(_ handler: @escaping @Sendable (String) -> Void) {
        lifecycle.onUnexpectedExit(handler)
    }

    public var stopDiscardsGuestState: Bool { true }

    /// Kills the kasa-vmm recorded in a sandbox state directory and removes the directory:
    /// the cleanup for a runtime that died without tearing down (`containerd-shim-kata-v2
    /// delete`). Only a process that is still a kasa-vmm is killed.
    public static func cleanUpAbandoned(stateDirectory: String, sandboxID: String) {
        if let text = HostFile.readText(stateDirectory + "/kasa-vmm.pid"),
           let pid = Int32(text.split(separator: "\n").first ?? ""), pid > 1,
           let command = HostFile.readText("/proc/\(pid)/cmdline"), command.contains("kasa-vmm"),
           command.contains(stateDirectory) {
            kill(pid, SIGKILL)
        }
        if let hierarchy = SandboxCgroup.unifiedHierarchy() {
            SandboxCgroup(hierarchy: hierarchy, sandboxID: sandboxID, stateDirectory: stateDirectory).remove()
        }
        VirtioFSExport(stateDirectory: stateDirectory, cache: "auto").release()
        HostFile.removeTree(stateDirectory)
    }

    public func tearDown() {
        let child = lifecycle.beginTearDown()
        // SIGKILL straight away: the guest keeps nothing worth a clean shutdown (the
        // rootfs image is read-only, the container's writes live in guest memory).
        child?.signal(SIGKILL)
        child?.wait(timeout: 10)
        if let hierarchy = settings.cgroupHierarchy {
            SandboxCgroup(hierarchy: hierarchy, sandboxID: settings.sandboxID, stateDirectory: settings.stateDirectory).remove()
        }
        settings.network?.tearDown()
        // The shared directory's mounts come off before the state directory goes (its
        // removal never deletes through a mount point, whatever is left).
        settings.virtioFS?.release()
        HostFile.removeTree(settings.stateDirectory)
    }

    /// The ends of kasa-vmm's log and the console log (empty when they go to stderr).
    public var failureDetail: String {
        guard !settings.consoleToStandardError else { return "" }
        var text = ""
        for (name, path) in [("kasa-vmm", vmmLogPath), ("guest console", consoleLogPath)] {
            let tail = HostFile.tail(path, bytes: 2000)
            if !tail.isEmpty { text += "\n--- \(name) ---\n" + tail }
        }
        return text
    }
}

import HostOS
import MachineSize
import Boot
import CLinux
import Confinement
import KVM
import VMM
#if canImport(Glibc)
import Glibc
#endif

@main
enum KasaVMM {
    static func main() {
        // The signal mask is inherited: a parent that spawned this from a thread blocking
        // signals (dispatch's worker threads block most) would leave SIGTERM and SIGINT
        // without effect on the VMM. Start with none blocked.
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        let options: CommandLineOptions
        do {
            options = try CommandLineOptions.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            log("error: \(error)")
            exit(2)
        }
        if options.showHelp {
            writeStandardOutput(CommandLineOptions.helpText)
            exit(0)
        }
        if options.showVersion {
            writeStandardOutput("kasa-vmm \(CommandLineOptions.version)\n")
            exit(0)
        }
        keepTerminationSignalsAsInit()
        if let parent = options.parentPID {
            bindLifetime(toParent: parent)
        }
        exit(run(options))
    }

    /// With --parent-pid the VMM dies with the runtime that started it, even when that is
    /// killed with SIGKILL and cannot tear its sandbox down: no VM outlives its owner.
    /// Checked after arming: if the parent died first, getppid() already names another.
    /// As the init of a PID namespace of its own (the runtime's jail) getppid() is 0: the
    /// parent is outside it. The runtime arms the signal before this program runs, while it
    /// certainly lives (ChildProcess's clone waits for the exec), so it must be armed already.
    static func bindLifetime(toParent parent: Int32) {
        let inheritedSignal = clinux_parent_death_signal()
        guard clinux_set_parent_death_signal(SIGKILL) == 0 else {
            log("error: --parent-pid: prctl(PR_SET_PDEATHSIG): \(String(cString: strerror(errno)))")
            exit(1)
        }
        let actual = getppid()
        if actual == 0 && getpid() == 1 {
            guard inheritedSignal == SIGKILL else {
                log("error: --parent-pid \(parent): the parent is outside this PID namespace and did not arm PR_SET_PDEATHSIG before the exec")
                exit(1)
            }
            return
        }
        guard actual == parent else {
            log("error: --parent-pid \(parent): the parent process is gone (parent is now \(actual))")
            exit(1)
        }
    }

    /// The init of a PID namespace ignores every signal it has no handler for, but SIGKILL
    /// from outside: SIGTERM and its kind would no longer stop the VMM.
    static func keepTerminationSignalsAsInit() {
        guard getpid() == 1 else { return }
        guard clinux_exit_on_termination_signals() == 0 else {
            log("error: handlers for SIGTERM as a PID namespace's init: \(String(cString: strerror(errno)))")
            exit(1)
        }
    }

    /// Enters the jail (`--jail`) and prepares each thread's confinement, once the
    /// configuration is read and before the VM's first thread starts (the virtio-fs workers
    /// start with their device). A failure ends the process: it never runs half-confined.
    static func confine(_ options: CommandLineOptions, keeping paths: [JailPath], openFiles: Int) {
        do {
            if let root = options.jail {
                // What the VM's set-up learns from the host's files, learnt while they are in sight.
                _ = KVMSystem.isPVMHost
                try MountJail.enter(root: root, keeping: paths)
                try VMMConfinement.limitOpenFiles(to: openFiles)
            }
            try VMMConfinement.prepareProcess(mode: options.seccomp)
            // (--user with --seccomp off is refused by CommandLineOptions: nothing would drop
            // the capabilities set-up keeps.)
            if let user = options.user { try VMMConfinement.becomeUser(uid: user.uid, gid: user.gid) }
        } catch {
            log("error: \(error)")
            exit(1)
        }
    }

    /// Boots the VM and returns the exit status: 0 when the guest reset, 1 when the VM
    /// failed, 2 on bad input (the help text's EXIT STATUS).
    static func run(_ options: CommandLineOptions) -> Int32 {
        do {
            let vm: MicroVM
            if let directory = options.restore {
                let settings = try options.restoreSettings()
                let restored = try MicroVM.configuration(restoring: directory, settings: settings)
                confine(options, keeping: options.jail == nil ? [] : JailPlan.paths(
                    for: restored, apiSocket: options.apiSocket, extra: options.jailPaths),
                        openFiles: JailPlan.openFileLimit(for: restored))
                vm = try MicroVM(restoring: directory, settings: settings, vmmVersion: CommandLineOptions.version)
            } else {
                var configuration = try options.resolveConfiguration()
                configuration.testHook = TestHooks.portHook()
                confine(options, keeping: JailPlan.paths(for: configuration, apiSocket: options.apiSocket, extra: options.jailPaths),
                        openFiles: JailPlan.openFileLimit(for: configuration))
                vm = try MicroVM(configuration: configuration)
            }
            let configuration = vm.configuration
            if let path = options.apiSocket { try ControlSocket(path: path).serve(vm) }
            if options.verbose {
                let host = KVMSystem.isPVMHost ? "kvm_pvm (guest kernel code is emulated; expect slow boots)" : "hardware KVM"
                log("host: \(host)")
                if let boot = vm.boot {
                    log("kernel: \(configuration.kernelPath) via \(boot.entryProtocol.rawValue) entry at 0x\(String(boot.bootProcessorState.rip, radix: 16))")
                } else {
                    log("restored from: \(configuration.kernelPath)")
                }
                log("memory: \(configuration.memoryMiB) MiB, vCPUs: \(configuration.vcpuCount)")
                log("command line: \(vm.effectiveCommandLine)")
            }
            let mode = options.seccomp
            let reason = try vm.run(onceThreadsStarted: { VMMConfinement.confineMainThread(mode: mode) })
            if options.verbose { log("serial interrupt path: \(vm.serialInterruptDiagnosis())") }
            let rescued = vm.virtioWatchDiagnosis()
            if !rescued.isEmpty { log("virtio watch: \(rescued)") }
            switch reason {
            case .reset, .systemEvent:
                if options.verbose { log(reason.description) }
            case .tripleFault:
                log("the guest triple-faulted; treating it as a reset")
            case .stopped:
                break
            case .failed(let message):
                log("error: \(message)")
                return 1
            }
            return 0
        } catch {
            log("error: \(error)")
            // Bad input: the configuration (VMMError, ConfigurationFileError), the kernel
            // and the boot settings (BootError), a CPU feature name (CPUIDPolicyError), or
            // no usable /dev/kvm. Anything else is the VM failing.
            let badInput = error is VMMError || error is ConfigurationFileError || error is BootError
                || error is CPUIDPolicyError || error is KVMUnavailable
            return badInput ? 2 : 1
        }
    }
}

extension CommandLineOptions {
    /// With --restore the snapshot fixes the machine; only a clone's own host ends may be given.
    func restoreSettings() throws -> RestoreSettings {
        let fixed: [(String, Bool)] = [
            ("--config-file", configFile != nil), ("--kernel", kernel != nil), ("--initrd", initrd != nil),
            ("--cmdline", cmdline != nil), ("--memory", memory != nil), ("--vcpus", vcpus != nil),
            ("--hide-cpu-feature", !hiddenFeatures.isEmpty), ("--pvm-compat", pvmCompatibility != nil),
            ("--drive", !drives.isEmpty), ("--drive-slots", driveSlots != nil), ("--rng", entropy),
            ("--vsock-cid", vsockCID != nil), ("--no-pvh", noPVH),
        ]
        if let given = fixed.first(where: { $0.1 }) {
            throw VMMError.deviceSetupFailed("\(given.0) cannot be combined with --restore (the snapshot fixes it)")
        }
        let interfaces = try networks.map(NetworkSpecification.parse)
        if let withMAC = interfaces.first(where: { $0.mac != nil }) {
            throw VMMError.deviceSetupFailed("--net with --restore takes tap= or fd= only (the guest keeps its MAC \(withMAC.mac!))")
        }
        var settings = RestoreSettings(
            vsockUDSPath: vsockPath, networkBackends: interfaces.map(\.backend),
            console: try ConsoleChoice.parse(console ?? "stdout"),
            forwardStandardInput: !noStandardInput && (isatty(STDIN_FILENO) != 0 || ConsoleChoice.standardInputIsReadable))
        settings.sharedDirectories = try sharedDirectories.map(SharedDirectorySpecification.parse)
        settings.profilePath = profileDestination
        settings.profileIntervalMicroseconds = profileInterval ?? VMConfiguration.defaultProfileIntervalMicroseconds
        return settings
    }

    /// `--profile PATH`, else `$KASA_VMM_PROFILE.<pid>` (for a kasa-vmm a runtime starts).
    var profileDestination: String? {
        if let profile { return profile }
        guard let prefix = getenv("KASA_VMM_PROFILE").map({ String(cString: $0) }), !prefix.isEmpty else { return nil }
        return "\(prefix).\(HostProcess.outermostPID)"
    }

    func resolveConfiguration() throws -> VMConfiguration {
        let file = try configFile.map { try ConfigurationFile.load(path: $0) }
        guard let kernelPath = kernel ?? file?.bootSource?.kernelImagePath else {
            throw VMMError.fileMissing(role: "kernel", path: "(none given: use --kernel)")
        }
        var configuration = VMConfiguration(kernelPath: kernelPath)
        configuration.initrdPath = initrd ?? file?.bootSource?.initrdPath
        configuration.commandLine = cmdline ?? file?.bootSource?.bootArgs ?? VMConfiguration.defaultCommandLine
        configuration.memoryMiB = memory ?? file?.machineConfig?.memSizeMib ?? MachineSize.vmmDefaultMemoryMiB
        configuration.vcpuCount = vcpus ?? file?.machineConfig?.vcpuCount ?? 1
        configuration.console = try ConsoleChoice.parse(console ?? file?.console ?? "stdout")
        configuration.forwardStandardInput = !noStandardInput
            && (isatty(STDIN_FILENO) != 0 || ConsoleChoice.standardInputIsReadable)
        configuration.hiddenCPUFeatures = hiddenFeatures + (file?.hiddenCPUFeatures ?? [])
        if let fromFile = file?.pvmCompatibility, PVMCompatibility(rawValue: fromFile) == nil {
            throw VMMError.deviceSetupFailed("invalid pvm-compat '\(fromFile)' in the configuration file: use auto, on or off")
        }
        configuration.pvmCompatibility = pvmCompatibility ?? file?.pvmCompatibility.flatMap(PVMCompatibility.init(rawValue:)) ?? .auto
        configuration.preferPVH = !noPVH
        configuration.drives = try drives.map(DriveSpecification.parse) + (file?.drives?.map(\.configuration) ?? [])
        configuration.driveSlots = driveSlots ?? 0
        if configuration.driveSlots > 0 && apiSocket == nil {
            throw VMMError.deviceSetupFailed("--drive-slots needs --api-socket (the slots are filled through it)")
        }
        configuration.networkInterfaces = try networks.map(NetworkSpecification.parse)
            + (file?.networkInterfaces?.map(\.configuration) ?? [])
        configuration.entropy = entropy || file?.entropy != nil
        configuration.sharedDirectories = try sharedDirectories.map(SharedDirectorySpecification.parse)
        configuration.profilePath = profileDestination
        configuration.profileIntervalMicroseconds = profileInterval ?? VMConfiguration.defaultProfileIntervalMicroseconds
        if let path = vsockPath ?? file?.vsock?.udsPath {
            configuration.vsock = VsockConfiguration(guestCID: vsockCID ?? file?.vsock?.guestCID ?? 3, udsPath: path)
        } else if vsockCID != nil {
            throw VMMError.deviceSetupFailed("--vsock-cid needs --vsock-uds")
        }
        return configuration
    }
}

func log(_ message: String) {
    var line = "kasa-vmm: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

func writeStandardOutput(_ text: String) {
    writeFully(STDOUT_FILENO, Array(text.utf8))
}

/// Writes all of `bytes`, retrying short writes; false when the descriptor stops taking
/// them. On a socket a peer that hung up is an error (MSG_NOSIGNAL), not a SIGPIPE that
/// would end the VM.
@discardableResult
func writeFully(_ descriptor: Int32, _ bytes: [UInt8], isSocket: Bool = false) -> Bool {
    DescriptorIO.write(descriptor, bytes, socket: isSocket) == 0
}

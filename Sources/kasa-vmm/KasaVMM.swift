import ArgumentParser
import KVM
import VMM
#if canImport(Glibc)
import Glibc
#endif

@main
struct KasaVMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kasa-vmm",
        abstract: "Boot a Linux kernel in a KVM microVM.",
        discussion: """
            Boots an uncompressed ELF vmlinux (PVH entry when present, else its 64-bit entry) or a \
            bzImage with an optional initrd. The guest's serial console (COM1, ttyS0) goes to \
            standard output or a file. The VMM exits 0 when the guest resets (Linux: reboot=k, the \
            default command line), 1 when the VM fails, 2 on bad input.

            A Firecracker-style JSON file can carry the same settings:
              {"boot-source": {"kernel_image_path": "vmlinux", "initrd_path": "initrd.cpio",
                               "boot_args": "console=ttyS0 reboot=k panic=1"},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
               "console": "stdout"}
            Flags given on the command line override the file; "drives", "entropy" and "vsock" take \
            Firecracker's keys (path_on_host, is_read_only, is_root_device; guest_cid, uds_path).
            """
    )

    @Option(name: .customLong("config-file"), help: ArgumentHelp("Firecracker-style JSON configuration.", valueName: "path"))
    var configFile: String?

    @Option(help: ArgumentHelp("Guest kernel: ELF vmlinux or bzImage.", valueName: "path"))
    var kernel: String?

    @Option(help: ArgumentHelp("Initial ramdisk (cpio, optionally compressed).", valueName: "path"))
    var initrd: String?

    @Option(name: [.customLong("cmdline"), .customLong("boot-args")], help: ArgumentHelp("Kernel command line.", valueName: "args"))
    var cmdline: String?

    @Option(name: [.customLong("memory"), .customLong("mem-size-mib")], help: ArgumentHelp("Guest memory in MiB (default 128).", valueName: "MiB"))
    var memory: UInt64?

    @Option(name: [.customLong("vcpus"), .customLong("vcpu-count")], help: ArgumentHelp("Number of vCPUs (default 1).", valueName: "n"))
    var vcpus: Int?

    @Option(help: ArgumentHelp("Serial console destination: stdout, none, or a file path.", valueName: "stdout|none|path"))
    var console: String?

    @Flag(name: .customLong("no-stdin"), help: "Do not forward standard input to the guest console.")
    var noStandardInput = false

    @Option(name: .customLong("hide-cpu-feature"), help: ArgumentHelp("Hide a CPUID feature from the guest (repeatable), e.g. avx512f.", valueName: "name"))
    var hiddenFeatures: [String] = []

    @Option(name: .customLong("pvm-compat"), help: ArgumentHelp("Add the kvm_pvm guest command line: auto (when /dev/kvm is kvm_pvm), on, off.", valueName: "auto|on|off"))
    var pvmCompatibility: PVMCompatibility?

    @Option(name: .customLong("drive"), help: ArgumentHelp("A virtio-blk disk (repeatable): path=FILE[,readonly=on|off][,root=on|off][,id=NAME]. Drives become vda, vdb, ... in order.", valueName: "spec"))
    var drives: [String] = []

    @Flag(name: .customLong("rng"), help: "Add a virtio-rng device fed by the host's getrandom.")
    var entropy = false

    @Option(name: .customLong("vsock-uds"), help: ArgumentHelp("Add a virtio-vsock device bridged to this Unix socket (hybrid vsock: connect, send 'CONNECT <port>\\n').", valueName: "path"))
    var vsockPath: String?

    @Option(name: .customLong("vsock-cid"), help: ArgumentHelp("The guest's vsock context id (default 3).", valueName: "cid"))
    var vsockCID: UInt64?

    @Flag(name: .customLong("no-pvh"), help: "Enter an ELF kernel through its 64-bit entry even if it has a PVH entry.")
    var noPVH = false

    @Flag(name: .shortAndLong, help: "Describe the VM on standard error before booting.")
    var verbose = false

    mutating func run() throws {
        do {
            let configuration = try resolveConfiguration()
            let vm = try MicroVM(configuration: configuration)
            if verbose {
                let host = KVMSystem.isPVMHost ? "kvm_pvm (guest kernel code is emulated; expect slow boots)" : "hardware KVM"
                log("host: \(host)")
                log("kernel: \(configuration.kernelPath) via \(vm.boot.entryProtocol.rawValue) entry at 0x\(String(vm.boot.bootProcessorState.rip, radix: 16))")
                log("memory: \(configuration.memoryMiB) MiB, vCPUs: \(configuration.vcpuCount)")
                log("command line: \(vm.effectiveCommandLine)")
            }
            let reason = try vm.run()
            switch reason {
            case .reset, .systemEvent:
                if verbose { log(reason.description) }
            case .tripleFault:
                log("the guest triple-faulted; treating it as a reset")
            case .stopped:
                break
            case .failed(let message):
                log("error: \(message)")
                throw ExitCode(1)
            }
        } catch let error as VMMError {
            log("error: \(error)")
            throw ExitCode(2)
        } catch let error as KVMUnavailable {
            log("error: \(error)")
            throw ExitCode(2)
        } catch let error as ExitCode {
            throw error
        } catch {
            log("error: \(error)")
            throw ExitCode(error is ConfigurationFileError ? 2 : 1)
        }
    }

    func resolveConfiguration() throws -> VMConfiguration {
        let file = try configFile.map { try ConfigurationFile.load(path: $0) }
        guard let kernelPath = kernel ?? file?.bootSource?.kernelImagePath else {
            throw VMMError.fileMissing(role: "kernel", path: "(none given: use --kernel)")
        }
        var configuration = VMConfiguration(kernelPath: kernelPath)
        configuration.initrdPath = initrd ?? file?.bootSource?.initrdPath
        configuration.commandLine = cmdline ?? file?.bootSource?.bootArgs ?? VMConfiguration.defaultCommandLine
        configuration.memoryMiB = memory ?? file?.machineConfig?.memSizeMib ?? 128
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
        configuration.entropy = entropy || file?.entropy != nil
        if let path = vsockPath ?? file?.vsock?.udsPath {
            configuration.vsock = VsockConfiguration(guestCID: vsockCID ?? file?.vsock?.guestCID ?? 3, udsPath: path)
        } else if vsockCID != nil {
            throw VMMError.deviceSetupFailed("--vsock-cid needs --vsock-uds")
        }
        return configuration
    }
}

extension PVMCompatibility: ExpressibleByArgument {}

func log(_ message: String) {
    var line = "kasa-vmm: \(message)\n"
    line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

import SharedFileSystem
import MachineSize
import Boot
import Virtio

/// Where the guest's serial console goes.
public enum ConsoleOutput: Sendable {
    case standardOutput
    case file(path: String)
    case discard
    /// Each chunk of bytes the guest writes, as it writes them (tests, the Runtime).
    case handler(@Sendable ([UInt8]) -> Void)
}

/// Whether to add the guest command line that kvm_pvm hosts need (docs/kvm-pvm.md).
public enum PVMCompatibility: String, Sendable, CaseIterable {
    case auto, on, off
}

/// A drive slot filled while the VM runs: its index among the virtio devices and the
/// name Linux gives it (vdc).
public struct AttachedDrive: Sendable, Equatable {
    public let index: Int
    public let guestName: String

    public init(index: Int, guestName: String) {
        self.index = index
        self.guestName = guestName
    }
}

/// A virtio-blk drive backed by a file or block device.
public struct DriveConfiguration: Sendable, Equatable {
    public var path: String
    public var readOnly: Bool
    /// The guest mounts this drive as its root filesystem (`root=/dev/vda`); at most one.
    public var isRoot: Bool
    public var identifier: String?

    public init(path: String, readOnly: Bool = false, isRoot: Bool = false, identifier: String? = nil) {
        self.path = path
        self.readOnly = readOnly
        self.isRoot = isRoot
        self.identifier = identifier
    }
}

/// A virtio-vsock device bridged to a Unix socket (Firecracker's hybrid vsock).
public struct VsockConfiguration: Sendable, Equatable {
    public var guestCID: UInt64
    public var udsPath: String

    public init(guestCID: UInt64, udsPath: String) {
        self.guestCID = guestCID
        self.udsPath = udsPath
    }
}

/// A virtio-net interface on a TAP: opened by name here, or inherited already open (the
/// runtime opens it inside the pod's network namespace and passes the descriptor).
/// A host directory served to the guest over virtio-fs (`mount -t virtiofs TAG DIR`).
public struct SharedDirectoryConfiguration: Sendable, Equatable {
    public var tag: String
    public var path: String
    public var readOnly: Bool
    public var cache: SharedFileSystemCache

    public init(tag: String, path: String, readOnly: Bool = false, cache: SharedFileSystemCache = .auto) {
        self.tag = tag
        self.path = path
        self.readOnly = readOnly
        self.cache = cache
    }
}

public struct NetworkInterfaceConfiguration: Sendable, Equatable {
    public enum Backend: Sendable, Equatable {
        case tapName(String)
        case descriptor(Int32)
        /// No host network (yet): frames sent are dropped, none arrive (`UnpluggedBackend`).
        case unplugged
    }

    public var backend: Backend
    /// The guest NIC's MAC; a random locally administered one when nil.
    public var mac: MACAddress?
    public var mtu: UInt16

    public init(backend: Backend, mac: MACAddress? = nil, mtu: UInt16 = 1500) {
        self.backend = backend
        self.mac = mac
        self.mtu = mtu
    }
}

/// Everything needed to build and boot one microVM.
public struct VMConfiguration: Sendable {
    public var kernelPath: String
    public var initrdPath: String?
    public var commandLine: String
    public var memoryMiB: UInt64
    public var vcpuCount: Int
    public var console: ConsoleOutput
    /// Forward this process's standard input to the guest's serial port.
    public var forwardStandardInput: Bool
    public var hiddenCPUFeatures: [String]
    public var pvmCompatibility: PVMCompatibility
    /// Use the ELF's PVH entry when it has one (otherwise its 64-bit entry).
    public var preferPVH: Bool
    public var kvmPath: String
    public var drives: [DriveConfiguration] = []
    /// Empty read-only drives after `drives`, filled while the guest runs
    /// (`MicroVM.attachDrive`): a pod's later containers get their rootfs this way.
    public var driveSlots = 0
    public var entropy = false
    public var vsock: VsockConfiguration?
    /// virtio-fs devices, after vsock and before the network interfaces.
    public var sharedDirectories: [SharedDirectoryConfiguration] = []
    /// virtio-net devices, after every other device (so drive names do not move): the
    /// guest sees them as eth0, eth1, ... in order.
    public var networkInterfaces: [NetworkInterfaceConfiguration] = []
    /// Where to write a sampling profile of the guest (`GuestProfiler`); nil: no profiling.
    public var profilePath: String?
    /// Microseconds between samples of each vCPU.
    public var profileIntervalMicroseconds = VMConfiguration.defaultProfileIntervalMicroseconds
    public static let defaultProfileIntervalMicroseconds = 1000
    /// Tests only: a guest write to port `testHookPort` calls this on that vCPU's thread with
    /// the value written (kasa-vmm's seccomp test makes a forbidden call there). nil: no such port.
    public var testHook: (@Sendable (UInt32) -> Void)?
    public static let testHookPort: UInt16 = 0xf4

    public static let defaultCommandLine = "console=ttyS0 reboot=k panic=1 nomodule i8042.noaux i8042.nomux i8042.dumbkbd"

    public init(kernelPath: String, initrdPath: String? = nil, commandLine: String = VMConfiguration.defaultCommandLine,
                memoryMiB: UInt64 = MachineSize.vmmDefaultMemoryMiB, vcpuCount: Int = MachineSize.defaultVCPUs, console: ConsoleOutput = .standardOutput,
                forwardStandardInput: Bool = false, hiddenCPUFeatures: [String] = [],
                pvmCompatibility: PVMCompatibility = .auto, preferPVH: Bool = true, kvmPath: String = "/dev/kvm") {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.console = console
        self.forwardStandardInput = forwardStandardInput
        self.hiddenCPUFeatures = hiddenCPUFeatures
        self.pvmCompatibility = pvmCompatibility
        self.preferPVH = preferPVH
        self.kvmPath = kvmPath
    }
}

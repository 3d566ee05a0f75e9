import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The /dev/kvm handle: API checks, capabilities, supported CPUID, and the factory for VMs.
public final class KVMSystem: Sendable {
    public static let defaultPath = "/dev/kvm"
    public static let expectedAPIVersion: Int32 = 12

    let descriptor: OwnedDescriptor
    public let path: String

    /// Opens the KVM device and checks the API version; each failure says how to fix it.
    public init(path: String = KVMSystem.defaultPath) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        if fd < 0 {
            let code = Glibc.errno
            switch code {
            case ENOENT: throw KVMUnavailable.deviceMissing(path: path)
            case EACCES, EPERM: throw KVMUnavailable.permissionDenied(path: path)
            default: throw KVMUnavailable.cannotOpen(path: path, errno: code)
            }
        }
        descriptor = OwnedDescriptor(fd)
        self.path = path
        let version = ckvm_ioctl_none(fd, CKVM_GET_API_VERSION)
        guard version == KVMSystem.expectedAPIVersion else {
            throw KVMUnavailable.unsupportedAPIVersion(version)
        }
    }

    /// KVM_CHECK_EXTENSION on the system fd: 0 means absent, positive values carry a quantity.
    public func check(_ capability: KVMCapability) -> Int32 {
        max(0, ckvm_ioctl_value(descriptor.raw, CKVM_CHECK_EXTENSION, UInt(capability.rawValue)))
    }

    public func require(_ capabilities: [KVMCapability] = KVMCapability.required) throws {
        for capability in capabilities where check(capability) == 0 {
            throw KVMUnavailable.missingCapability(capability)
        }
    }

    /// The most vCPUs one VM may have on this host.
    public var maximumVCPUs: Int {
        let maximum = check(.maxVCPUs)
        if maximum > 0 { return Int(maximum) }
        let recommended = check(.recommendedVCPUs)
        return recommended > 0 ? Int(recommended) : 4
    }

    public func vcpuMapSize() throws -> Int {
        let size = ckvm_ioctl_none(descriptor.raw, CKVM_GET_VCPU_MMAP_SIZE)
        if size <= 0 { throw KVMError.last("KVM_GET_VCPU_MMAP_SIZE") }
        return Int(size)
    }

    /// The CPUID leaves this host can expose to a guest, as KVM reports them.
    public func supportedCPUID() throws -> [kvm_cpuid_entry2] {
        var capacity = 128
        while capacity <= 4096 {
            if let entries = try CPUIDBuffer.withBuffer(capacity: capacity, { buffer -> [kvm_cpuid_entry2]? in
                if ckvm_ioctl_pointer(descriptor.raw, CKVM_GET_SUPPORTED_CPUID, buffer.header) == 0 {
                    return buffer.entries
                }
                if Glibc.errno == E2BIG { return nil }
                throw KVMError.last("KVM_GET_SUPPORTED_CPUID")
            }) {
                return entries
            }
            capacity *= 2
        }
        throw KVMError("KVM_GET_SUPPORTED_CPUID", errno: E2BIG)
    }

    /// The MSRs KVM saves and restores for a vCPU (KVM_GET_MSR_INDEX_LIST).
    public func msrIndexList() throws -> [UInt32] {
        var capacity = 256
        while capacity <= 16384 {
            var buffer = [UInt32](repeating: 0, count: capacity + 1)
            buffer[0] = UInt32(capacity)
            // Safe: kvm_msr_list is a u32 count followed by that many u32 indices; the
            // buffer holds the count plus `capacity` indices.
            let result = buffer.withUnsafeMutableBytes { ckvm_ioctl_pointer(descriptor.raw, CKVM_GET_MSR_INDEX_LIST, $0.baseAddress) }
            if result == 0 { return Array(buffer[1...].prefix(Int(min(buffer[0], UInt32(capacity))))) }
            guard Glibc.errno == E2BIG else { throw KVMError.last("KVM_GET_MSR_INDEX_LIST") }
            capacity *= 4
        }
        throw KVMError("KVM_GET_MSR_INDEX_LIST", errno: E2BIG)
    }

    public func createVirtualMachine() throws -> KVMVirtualMachine {
        let fd = ckvm_ioctl_value(descriptor.raw, CKVM_CREATE_VM, 0)
        if fd < 0 { throw KVMError.last("KVM_CREATE_VM") }
        return KVMVirtualMachine(descriptor: OwnedDescriptor(fd), system: self)
    }

    /// True when /dev/kvm is served by kvm_pvm (software-assisted, no VT-x/AMD-V):
    /// the guest kernel then runs emulated and needs the command line in docs/kvm-pvm.md.
    /// Looked up once: a jailed kasa-vmm has no /sys (it asks before entering its jail).
    public static let isPVMHost: Bool = access("/sys/module/kvm_pvm", F_OK) == 0
}

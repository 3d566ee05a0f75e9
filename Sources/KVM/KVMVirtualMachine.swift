import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A VM file descriptor: memory slots, the in-kernel interrupt controllers, interrupts and vCPUs.
public final class KVMVirtualMachine: Sendable {
    let descriptor: OwnedDescriptor
    public let system: KVMSystem

    /// Whether KVM_IRQ_LINE_STATUS tells what an interrupt line change did.
    let reportsInjectionStatus: Bool

    init(descriptor: OwnedDescriptor, system: KVMSystem) {
        self.descriptor = descriptor
        self.system = system
        reportsInjectionStatus = ckvm_ioctl_value(descriptor.raw, CKVM_CHECK_EXTENSION, UInt(KVMCapability.irqInjectStatus.rawValue)) > 0
    }

    /// KVM_CHECK_EXTENSION on the VM fd (some answers differ per VM type).
    public func check(_ capability: KVMCapability) -> Int32 {
        max(0, ckvm_ioctl_value(descriptor.raw, CKVM_CHECK_EXTENSION, UInt(capability.rawValue)))
    }

    /// Maps `size` bytes of this process at `hostAddress` to guest-physical `guestAddress`.
    /// The caller keeps the mapping alive for as long as the VM exists.
    public func setMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64, hostAddress: UInt, readOnly: Bool = false) throws {
        var region = kvm_userspace_memory_region(
            slot: slot,
            flags: readOnly ? UInt32(KVM_MEM_READONLY) : 0,
            guest_phys_addr: guestAddress,
            memory_size: size,
            userspace_addr: UInt64(hostAddress)
        )
        if ckvm_ioctl_pointer(descriptor.raw, CKVM_SET_USER_MEMORY_REGION, &region) < 0 {
            throw KVMError.last("KVM_SET_USER_MEMORY_REGION (slot \(slot))")
        }
    }

    /// Intel VT-x needs three pages for the real-mode TSS somewhere the guest does not use.
    public func setTSSAddress(_ address: UInt64) throws {
        if ckvm_ioctl_value(descriptor.raw, CKVM_SET_TSS_ADDR, UInt(address)) < 0 {
            throw KVMError.last("KVM_SET_TSS_ADDR")
        }
    }

    public func setIdentityMapAddress(_ address: UInt64) throws {
        var value = address
        if ckvm_ioctl_pointer(descriptor.raw, CKVM_SET_IDENTITY_MAP_ADDR, &value) < 0 {
            throw KVMError.last("KVM_SET_IDENTITY_MAP_ADDR")
        }
    }

    /// The in-kernel PIC pair, IOAPIC and per-vCPU LAPICs. Must precede vCPU creation.
    public func createInterruptController() throws {
        if ckvm_ioctl_none(descriptor.raw, CKVM_CREATE_IRQCHIP) < 0 {
            throw KVMError.last("KVM_CREATE_IRQCHIP")
        }
    }

    /// The in-kernel i8254 timer (Linux calibrates against it early in boot).
    public func createProgrammableIntervalTimer() throws {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        if ckvm_ioctl_pointer(descriptor.raw, CKVM_CREATE_PIT2, &config) < 0 {
            throw KVMError.last("KVM_CREATE_PIT2")
        }
    }

    /// One input of the in-kernel IOAPIC: where it points and whether a request waits on it.
    public struct IOAPICPin: Sendable, Equatable, CustomStringConvertible {
        public var vector: UInt8
        public var masked: Bool
        public var levelTriggered: Bool
        public var remoteIRR: Bool
        public var requested: Bool
        public var description: String {
            "vector \(vector) \(masked ? "masked" : "unmasked") \(levelTriggered ? "level" : "edge") "
                + "remote-irr \(remoteIRR) irr \(requested)"
        }
    }

    public func ioapicPin(_ pin: UInt32) throws -> IOAPICPin {
        var value = ckvm_ioapic_pin()
        if ckvm_ioapic_pin(descriptor.raw, pin, &value) < 0 {
            throw KVMError.last("KVM_GET_IRQCHIP (IOAPIC pin \(pin))")
        }
        return IOAPICPin(vector: value.vector, masked: value.masked != 0, levelTriggered: value.level_triggered != 0,
                         remoteIRR: value.remote_irr != 0, requested: value.irr != 0)
    }

    /// Drives a GSI line of the in-kernel PIC/IOAPIC. Where KVM reports it
    /// (KVM_CAP_IRQ_INJECT_STATUS), returns KVM's status for the change as it is (its
    /// documentation: above 0 delivered, 0 merged with a request still waiting, below 0
    /// masked); the serial diagnosis records the values without interpreting them further.
    /// Nil where KVM does not report it.
    @discardableResult
    public func setInterruptLine(_ line: UInt32, high: Bool) throws -> Int32? {
        var level = kvm_irq_level()
        level.irq = line
        level.level = high ? 1 : 0
        let request = reportsInjectionStatus ? CKVM_IRQ_LINE_STATUS : CKVM_IRQ_LINE
        if ckvm_ioctl_pointer(descriptor.raw, request, &level) < 0 {
            throw KVMError.last("KVM_IRQ_LINE \(line)")
        }
        return reportsInjectionStatus ? level.status : nil
    }

    /// Lets an eventfd write inject GSI `line` without a trip through the VMM.
    public func registerInterruptEventFD(_ eventFD: Int32, line: UInt32) throws {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD)
        request.gsi = line
        if ckvm_ioctl_pointer(descriptor.raw, CKVM_IRQFD, &request) < 0 {
            throw KVMError.last("KVM_IRQFD gsi \(line)")
        }
    }

    /// Makes guest writes to `address` signal `eventFD` instead of exiting to the vCPU thread.
    public func registerIOEventFD(_ eventFD: Int32, mmioAddress address: UInt64, length: UInt32, matching value: UInt64? = nil) throws {
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = length
        request.fd = eventFD
        if let value {
            request.datamatch = value
            request.flags = CKVM_IOEVENTFD_FLAG_DATAMATCH
        }
        if ckvm_ioctl_pointer(descriptor.raw, CKVM_IOEVENTFD, &request) < 0 {
            throw KVMError.last("KVM_IOEVENTFD at 0x\(String(address, radix: 16))")
        }
    }

    public func createVCPU(id: UInt32) throws -> VCPU {
        let fd = ckvm_ioctl_value(descriptor.raw, CKVM_CREATE_VCPU, UInt(id))
        if fd < 0 { throw KVMError.last("KVM_CREATE_VCPU \(id)") }
        let owned = OwnedDescriptor(fd)
        let mapSize = try system.vcpuMapSize()
        guard let mapping = mmap(nil, mapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            throw KVMError.last("mmap of vCPU \(id) run area")
        }
        return VCPU(id: id, descriptor: owned, runArea: mapping, runAreaSize: mapSize, system: system,
                    xsaveSize: max(MemoryLayout<kvm_xsave>.size, Int(check(.xsave2))))
    }
}

import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A vCPU file descriptor with its mapped kvm_run area. Only the thread that runs it may call
/// `run` and the register accessors; `requestExit` is the one call safe from other threads.
public final class VCPU: @unchecked Sendable {
    public let id: UInt32
    let descriptor: OwnedDescriptor
    // Safe to share: the kernel owns the layout; the VMM only touches it through CKVM helpers,
    // from the vCPU's own thread, except `immediate_exit`, which is written atomically.
    let runArea: UnsafeMutableRawPointer
    let runAreaSize: Int
    /// The host that lists the MSRs a snapshot saves.
    let machineSystem: KVMSystem
    /// Bytes of this vCPU's XSAVE area (4 KiB, more with AMX-sized state: KVM_CAP_XSAVE2).
    let xsaveSize: Int

    init(id: UInt32, descriptor: OwnedDescriptor, runArea: UnsafeMutableRawPointer, runAreaSize: Int,
         system: KVMSystem, xsaveSize: Int) {
        self.id = id
        self.descriptor = descriptor
        self.runArea = runArea
        self.runAreaSize = runAreaSize
        self.machineSystem = system
        self.xsaveSize = xsaveSize
    }

    deinit { munmap(runArea, runAreaSize) }

    private var state: UnsafeMutablePointer<kvm_run> {
        runArea.assumingMemoryBound(to: kvm_run.self)
    }

    /// Enters the guest until the next exit that KVM hands to user space.
    public func run() throws -> VCPUExit {
        if ckvm_ioctl_none(descriptor.raw, CKVM_RUN) < 0 {
            let code = Glibc.errno
            if code == EINTR || code == EAGAIN {
                ckvm_set_immediate_exit(state, 0)
                return .interrupted
            }
            throw KVMError("KVM_RUN on vCPU \(id)", errno: code)
        }
        var exit = ckvm_exit()
        ckvm_decode_exit(state, &exit)
        return decode(exit)
    }

    private func decode(_ exit: ckvm_exit) -> VCPUExit {
        switch Int32(exit.reason) {
        case KVM_EXIT_IO:
            let length = Int(exit.io_size) * Int(exit.io_count)
            if exit.io_direction == UInt8(KVM_EXIT_IO_OUT) {
                // Safe: KVM places size × count bytes at data_offset inside the run area.
                let start = runArea.advanced(by: Int(exit.io_data_offset)).assumingMemoryBound(to: UInt8.self)
                return .portOut(port: exit.io_port, size: Int(exit.io_size), bytes: Array(UnsafeBufferPointer(start: start, count: length)))
            }
            return .portIn(port: exit.io_port, size: Int(exit.io_size), count: Int(exit.io_count))
        case KVM_EXIT_MMIO:
            if exit.mmio_is_write != 0 {
                let bytes = withUnsafeBytes(of: exit.mmio_data) { Array($0.prefix(Int(exit.mmio_length))) }
                return .mmioWrite(address: exit.mmio_address, bytes: bytes)
            }
            return .mmioRead(address: exit.mmio_address, length: Int(exit.mmio_length))
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_INTR:
            return .interrupted
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: exit.system_event_type)
        case KVM_EXIT_INTERNAL_ERROR:
            let data = withUnsafeBytes(of: exit.internal_data) { raw in
                Array(raw.bindMemory(to: UInt64.self).prefix(Int(exit.internal_ndata)))
            }
            let instruction = exit.emulation_has_bytes != 0
                ? withUnsafeBytes(of: exit.emulation_instruction) { Array($0.prefix(Int(exit.emulation_instruction_length))) }
                : []
            return .internalError(suberror: exit.internal_suberror, data: data, instruction: instruction)
        case KVM_EXIT_FAIL_ENTRY:
            return .failedEntry(hardwareReason: exit.hardware_reason)
        default:
            return .unknown(reason: exit.reason, hardwareReason: exit.hardware_reason)
        }
    }

    /// Supplies the bytes an `in`/`ins` exit reads; must come before the next `run`.
    public func completePortIn(_ bytes: [UInt8]) {
        var exit = ckvm_exit()
        ckvm_decode_exit(state, &exit)
        guard Int32(exit.reason) == KVM_EXIT_IO else { return }
        let length = min(bytes.count, Int(exit.io_size) * Int(exit.io_count))
        // Safe: the destination is the size × count byte window KVM reserved in the run area.
        let destination = runArea.advanced(by: Int(exit.io_data_offset))
        bytes.withUnsafeBytes { source in
            destination.copyMemory(from: source.baseAddress!, byteCount: length)
        }
    }

    /// Supplies the value an MMIO read returns; must come before the next `run`.
    public func completeMMIORead(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer in
            ckvm_set_mmio_read_data(state, buffer.baseAddress, UInt32(buffer.count))
        }
    }

    /// Makes the current or next KVM_RUN return at once. Pair it with a signal to the vCPU
    /// thread so a run already in progress is interrupted too.
    public func requestExit() {
        ckvm_set_immediate_exit(state, 1)
    }

    // MARK: - Register state

    public func registers() throws -> kvm_regs {
        var value = kvm_regs()
        try call(CKVM_GET_REGS, &value, "KVM_GET_REGS")
        return value
    }

    public func setRegisters(_ registers: kvm_regs) throws {
        var value = registers
        try call(CKVM_SET_REGS, &value, "KVM_SET_REGS")
    }

    public func specialRegisters() throws -> kvm_sregs {
        var value = kvm_sregs()
        try call(CKVM_GET_SREGS, &value, "KVM_GET_SREGS")
        return value
    }

    public func setSpecialRegisters(_ registers: kvm_sregs) throws {
        var value = registers
        try call(CKVM_SET_SREGS, &value, "KVM_SET_SREGS")
    }

    public func setFPU(_ fpu: kvm_fpu) throws {
        var value = fpu
        try call(CKVM_SET_FPU, &value, "KVM_SET_FPU")
    }

    public func localAPIC() throws -> kvm_lapic_state {
        var value = kvm_lapic_state()
        try call(CKVM_GET_LAPIC, &value, "KVM_GET_LAPIC")
        return value
    }

    /// Whether `vector` waits in this vCPU's local APIC (requested) or is being handled (in service).
    public func localAPICVector(_ vector: UInt8) throws -> (requested: Bool, inService: Bool) {
        var requested: UInt8 = 0, inService: UInt8 = 0
        if ckvm_lapic_vector(descriptor.raw, vector, &requested, &inService) < 0 {
            throw KVMError.last("KVM_GET_LAPIC")
        }
        return (requested != 0, inService != 0)
    }

    public func setLocalAPIC(_ state: kvm_lapic_state) throws {
        var value = state
        try call(CKVM_SET_LAPIC, &value, "KVM_SET_LAPIC")
    }

    public func events() throws -> kvm_vcpu_events {
        var value = kvm_vcpu_events()
        try call(CKVM_GET_VCPU_EVENTS, &value, "KVM_GET_VCPU_EVENTS")
        return value
    }

    public func setEvents(_ events: kvm_vcpu_events) throws {
        var value = events
        try call(CKVM_SET_VCPU_EVENTS, &value, "KVM_SET_VCPU_EVENTS")
    }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        try CPUIDBuffer.withBuffer(entries: entries) { buffer in
            if ckvm_ioctl_pointer(descriptor.raw, CKVM_SET_CPUID2, buffer.header) < 0 {
                throw KVMError.last("KVM_SET_CPUID2 on vCPU \(id)")
            }
        }
    }

    /// Writes model-specific registers; KVM reports how many it accepted.
    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws {
        let written = VCPU.withMSRBuffer(values) { header, _ in ckvm_ioctl_pointer(descriptor.raw, CKVM_SET_MSRS, header) }
        if written < 0 { throw KVMError.last("KVM_SET_MSRS on vCPU \(id)") }
        if Int(written) != values.count {
            let rejected = values[Int(written)].index
            throw KVMError("KVM_SET_MSRS rejected MSR 0x\(String(rejected, radix: 16)) on vCPU \(id)", errno: EINVAL)
        }
    }

    /// A kvm_msrs header followed by its entries (Swift cannot declare the flexible array),
    /// filled from `values`, for one KVM_GET_MSRS or KVM_SET_MSRS.
    static func withMSRBuffer<R>(_ values: [(index: UInt32, value: UInt64)],
                                 _ body: (UnsafeMutablePointer<kvm_msrs>, UnsafeMutablePointer<kvm_msr_entry>) throws -> R) rethrows -> R {
        let bytes = MemoryLayout<kvm_msrs>.size + values.count * MemoryLayout<kvm_msr_entry>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let header = raw.bindMemory(to: kvm_msrs.self, capacity: 1)
        header.pointee.nmsrs = UInt32(values.count)
        // Safe: the allocation has room for values.count entries right after the header.
        let entries = raw.advanced(by: MemoryLayout<kvm_msrs>.size).bindMemory(to: kvm_msr_entry.self, capacity: max(1, values.count))
        for (offset, msr) in values.enumerated() {
            entries[offset] = kvm_msr_entry(index: msr.index, reserved: 0, data: msr.value)
        }
        return try body(header, entries)
    }

    /// Asks KVM to walk the guest's page tables for a linear address.
    public func translate(linearAddress: UInt64) throws -> UInt64? {
        var translation = kvm_translation()
        translation.linear_address = linearAddress
        try call(CKVM_TRANSLATE, &translation, "KVM_TRANSLATE")
        return translation.valid != 0 ? translation.physical_address : nil
    }

    /// `T` is always one of KVM's plain C structs, never a type holding references.
    private func call<T: BitwiseCopyable>(_ request: UInt, _ value: inout T, _ name: String) throws {
        let result = withUnsafeMutableBytes(of: &value) { ckvm_ioctl_pointer(descriptor.raw, request, $0.baseAddress) }
        if result < 0 {
            throw KVMError.last("\(name) on vCPU \(id)")
        }
    }
}

import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Everything KVM holds for one vCPU, captured while it is out of KVM_RUN, so that a new
/// vCPU (in another process) continues exactly where this one stopped. The KVM structures
/// are kept as their raw bytes: their layouts are the kernel's stable ABI, and a snapshot
/// is only ever restored by the same kasa-vmm on the same CPU model (`SnapshotManifest`).
public struct VCPUState: Sendable, Equatable {
    /// One `KVM_GET_*` structure and the request pair that moves it.
    public enum Part: UInt8, Sendable, CaseIterable {
        // The order restore applies them in: the multiprocessing state before the registers
        // it may reset, the local APIC before the MSRs that depend on its mode (TSC deadline),
        // the pending events last, once everything they refer to is in place.
        case multiprocessingState = 1, registers, specialRegisters, fpu, xsave, extendedControlRegisters
        case debugRegisters, localAPIC, events
    }

    /// Raw structure bytes by part, in `Part` order.
    public var parts: [(part: Part, bytes: [UInt8])]
    /// Every MSR KVM lists (KVM_GET_MSR_INDEX_LIST) that this vCPU lets us read.
    public var msrs: [(index: UInt32, value: UInt64)]
    /// The CPUID the vCPU was given (KVM_GET_CPUID2): restored first, as the rest depends on it.
    public var cpuid: [UInt8]

    public init(parts: [(part: Part, bytes: [UInt8])], msrs: [(index: UInt32, value: UInt64)], cpuid: [UInt8]) {
        self.parts = parts
        self.msrs = msrs
        self.cpuid = cpuid
    }

    public static func == (lhs: VCPUState, rhs: VCPUState) -> Bool {
        lhs.parts.map(\.part) == rhs.parts.map(\.part) && lhs.parts.map(\.bytes) == rhs.parts.map(\.bytes)
            && lhs.msrs.map(\.index) == rhs.msrs.map(\.index) && lhs.msrs.map(\.value) == rhs.msrs.map(\.value)
            && lhs.cpuid == rhs.cpuid
    }
}

extension VCPUState.Part {
    /// The structure's size; for XSAVE the VM's (`KVMVirtualMachine.xsaveSize`).
    func size(xsave: Int) -> Int {
        switch self {
        case .multiprocessingState: return MemoryLayout<kvm_mp_state>.size
        case .registers: return MemoryLayout<kvm_regs>.size
        case .specialRegisters: return MemoryLayout<kvm_sregs>.size
        case .fpu: return MemoryLayout<kvm_fpu>.size
        case .xsave: return xsave
        case .extendedControlRegisters: return MemoryLayout<kvm_xcrs>.size
        case .debugRegisters: return MemoryLayout<kvm_debugregs>.size
        case .localAPIC: return MemoryLayout<kvm_lapic_state>.size
        case .events: return MemoryLayout<kvm_vcpu_events>.size
        }
    }

    func requests(largeXSAVE: Bool) -> (get: UInt, set: UInt, name: String) {
        switch self {
        case .multiprocessingState: return (CKVM_GET_MP_STATE, CKVM_SET_MP_STATE, "MP_STATE")
        case .registers: return (CKVM_GET_REGS, CKVM_SET_REGS, "REGS")
        case .specialRegisters: return (CKVM_GET_SREGS, CKVM_SET_SREGS, "SREGS")
        case .fpu: return (CKVM_GET_FPU, CKVM_SET_FPU, "FPU")
        case .xsave: return (largeXSAVE ? CKVM_GET_XSAVE2 : CKVM_GET_XSAVE, CKVM_SET_XSAVE, "XSAVE")
        case .extendedControlRegisters: return (CKVM_GET_XCRS, CKVM_SET_XCRS, "XCRS")
        case .debugRegisters: return (CKVM_GET_DEBUGREGS, CKVM_SET_DEBUGREGS, "DEBUGREGS")
        case .localAPIC: return (CKVM_GET_LAPIC, CKVM_SET_LAPIC, "LAPIC")
        case .events: return (CKVM_GET_VCPU_EVENTS, CKVM_SET_VCPU_EVENTS, "VCPU_EVENTS")
        }
    }
}

extension VCPU {
    /// Reads the whole state. Call only while no thread is inside `run` for this vCPU, and
    /// after a `run` that returned `.interrupted` if it last exited for I/O (that run
    /// completes the instruction, so no half-done I/O is left in the run area).
    public func captureState() throws -> VCPUState {
        var parts: [(part: VCPUState.Part, bytes: [UInt8])] = []
        for part in VCPUState.Part.allCases {
            let request = part.requests(largeXSAVE: xsaveSize > MemoryLayout<kvm_xsave>.size)
            var bytes = [UInt8](repeating: 0, count: part.size(xsave: xsaveSize))
            // Safe: the buffer is exactly the structure's size (XSAVE: the size KVM reported).
            let result = bytes.withUnsafeMutableBytes { ckvm_ioctl_pointer(descriptor.raw, request.get, $0.baseAddress) }
            if result < 0 { throw KVMError.last("KVM_GET_\(request.name) on vCPU \(id)") }
            parts.append((part, bytes))
        }
        return VCPUState(parts: parts, msrs: try readAllMSRs(), cpuid: try cpuidBytes())
    }

    /// Puts a captured state into this (new, never run) vCPU.
    public func restoreState(_ state: VCPUState) throws {
        try setCPUIDBytes(state.cpuid)
        let ordered = state.parts.sorted { $0.part.rawValue < $1.part.rawValue }
        for (part, bytes) in ordered {
            if part == .localAPIC || part == .events { continue }
            try setPart(part, bytes)
        }
        if let lapic = ordered.first(where: { $0.part == .localAPIC }) { try setPart(.localAPIC, lapic.bytes) }
        try setMSRs(state.msrs)
        if let events = ordered.first(where: { $0.part == .events }) { try setPart(.events, events.bytes) }
    }

    private func setPart(_ part: VCPUState.Part, _ bytes: [UInt8]) throws {
        let request = part.requests(largeXSAVE: false)
        guard bytes.count == part.size(xsave: xsaveSize) else {
            throw KVMError("KVM_SET_\(request.name) on vCPU \(id): the saved structure has \(bytes.count) bytes, this host's \(part.size(xsave: xsaveSize))", errno: EINVAL)
        }
        var copy = bytes
        // Safe: the size was checked against the structure KVM reads just above.
        let result = copy.withUnsafeMutableBytes { ckvm_ioctl_pointer(descriptor.raw, request.set, $0.baseAddress) }
        if result < 0 { throw KVMError.last("KVM_SET_\(request.name) on vCPU \(id)") }
    }

    /// Reads every listed MSR this vCPU answers for; KVM_GET_MSRS stops at the first it
    /// refuses, so that one is dropped and the rest read again.
    func readAllMSRs() throws -> [(index: UInt32, value: UInt64)] {
        var indices = try machineSystem.msrIndexList()
        while true {
            let values = try readMSRs(indices)
            if values.count == indices.count { return Array(zip(indices, values)).map { (index: $0.0, value: $0.1) } }
            indices.remove(at: values.count)
        }
    }

    private func readMSRs(_ indices: [UInt32]) throws -> [UInt64] {
        guard !indices.isEmpty else { return [] }
        return try VCPU.withMSRBuffer(indices.map { (index: $0, value: UInt64(0)) }) { header, entries in
            let read = ckvm_ioctl_pointer(descriptor.raw, CKVM_GET_MSRS, header)
            if read < 0 { throw KVMError.last("KVM_GET_MSRS on vCPU \(id)") }
            // Safe: KVM filled the first `read` of the entries the buffer holds.
            return (0..<min(Int(read), indices.count)).map { entries[$0].data }
        }
    }

    private func cpuidBytes() throws -> [UInt8] {
        try CPUIDBuffer.withBuffer(capacity: 256) { buffer in
            if ckvm_ioctl_pointer(descriptor.raw, CKVM_GET_CPUID2, buffer.header) < 0 {
                throw KVMError.last("KVM_GET_CPUID2 on vCPU \(id)")
            }
            return buffer.entries.withUnsafeBytes { Array($0) }
        }
    }

    private func setCPUIDBytes(_ bytes: [UInt8]) throws {
        let stride = MemoryLayout<kvm_cpuid_entry2>.stride
        guard !bytes.isEmpty, bytes.count % stride == 0 else {
            throw KVMError("KVM_SET_CPUID2 on vCPU \(id): the saved CPUID is \(bytes.count) bytes, not whole entries", errno: EINVAL)
        }
        // Safe: the byte count is a whole number of entries (checked above), and
        // kvm_cpuid_entry2 is a plain C struct any bit pattern of which is a value.
        let entries = bytes.withUnsafeBytes { raw in (0..<bytes.count / stride).map { raw.loadUnaligned(fromByteOffset: $0 * stride, as: kvm_cpuid_entry2.self) } }
        try setCPUID(entries)
    }
}

extension VCPUState {
    /// Where the vCPU stopped (RIP), if the registers were captured.
    public var instructionPointer: UInt64? {
        guard let bytes = parts.first(where: { $0.part == .registers })?.bytes, bytes.count == MemoryLayout<kvm_regs>.size else { return nil }
        // Safe: the size matches kvm_regs, a plain C struct.
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: kvm_regs.self) }.rip
    }

    /// The privilege level it was running at (the low bits of CS), 0 for the kernel, 3 for user code.
    public var privilegeLevel: Int? {
        guard let bytes = parts.first(where: { $0.part == .specialRegisters })?.bytes, bytes.count == MemoryLayout<kvm_sregs>.size else { return nil }
        // Safe: the size matches kvm_sregs, a plain C struct.
        return Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: kvm_sregs.self) }.cs.selector & 3)
    }
}

/// Why KVM_RUN returned, decoded into what the VMM has to act on.
public enum VCPUExit: Sendable, Equatable {
    /// `out`/`outs`: `bytes` holds size × count bytes in guest order.
    case portOut(port: UInt16, size: Int, bytes: [UInt8])
    /// `in`/`ins`: answer with `VCPU.completePortIn` before the next run.
    case portIn(port: UInt16, size: Int, count: Int)
    case mmioWrite(address: UInt64, bytes: [UInt8])
    /// Answer with `VCPU.completeMMIORead` before the next run.
    case mmioRead(address: UInt64, length: Int)
    case halt
    /// Triple fault (or the guest asked for shutdown): x86 treats it as a reset.
    case shutdown
    /// A signal or `immediate_exit` interrupted KVM_RUN; the VMM decides whether to go on.
    case interrupted
    case systemEvent(type: UInt32)
    /// KVM could not continue. For emulation failures `instruction` holds the bytes KVM
    /// reported, when it reported them.
    case internalError(suberror: UInt32, data: [UInt64], instruction: [UInt8])
    case failedEntry(hardwareReason: UInt64)
    case unknown(reason: UInt32, hardwareReason: UInt64)
}

extension VCPUExit {
    public static let emulationFailureSuberror: UInt32 = 1
}

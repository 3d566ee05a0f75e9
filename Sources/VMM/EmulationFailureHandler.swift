import CKVM
import GuestMemory
import KVM

/// kvm_pvm emulates guest kernel code and cannot emulate a few instructions Linux uses
/// during boot. Two of them are cheap to finish in the VMM, which keeps the guest kernel
/// unpatched for them:
///   `int3` (0xCC): deliver #BP as the CPU would, with RIP past the instruction.
///   `fwait` (0x9B): nothing is pending when Linux issues it, so it is a no-op.
/// On hardware KVM these exits never happen.
struct EmulationFailureHandler {
    static let breakpointInstruction: UInt8 = 0xCC
    static let waitInstruction: UInt8 = 0x9B
    static let breakpointVector: UInt8 = 3

    enum Outcome: Equatable {
        case resumed(instruction: UInt8)
        case unhandled(instructionBytes: [UInt8], rip: UInt64)
    }

    let memory: GuestMemory

    func handle(vcpu: VCPU, reportedBytes: [UInt8]) throws -> Outcome {
        var registers = try vcpu.registers()
        let bytes = reportedBytes.isEmpty ? fetchInstruction(vcpu: vcpu, rip: registers.rip) : reportedBytes
        guard let first = bytes.first else { return .unhandled(instructionBytes: [], rip: registers.rip) }
        switch first {
        case EmulationFailureHandler.breakpointInstruction:
            registers.rip += 1
            try vcpu.setRegisters(registers)
            var events = try vcpu.events()
            events.exception.injected = 1
            events.exception.nr = EmulationFailureHandler.breakpointVector
            events.exception.has_error_code = 0
            events.exception.error_code = 0
            events.flags = 0
            try vcpu.setEvents(events)
            return .resumed(instruction: first)
        case EmulationFailureHandler.waitInstruction:
            registers.rip += 1
            try vcpu.setRegisters(registers)
            return .resumed(instruction: first)
        default:
            return .unhandled(instructionBytes: bytes, rip: registers.rip)
        }
    }

    /// Reads up to 15 bytes at CS:RIP, translating through the guest's paging when it is on.
    func fetchInstruction(vcpu: VCPU, rip: UInt64) -> [UInt8] {
        guard let special = try? vcpu.specialRegisters() else { return [] }
        let linear = special.cs.base &+ rip
        let pagingEnabled = special.cr0 & (1 << 31) != 0
        var physical: UInt64? = linear
        if pagingEnabled {
            physical = (try? vcpu.translate(linearAddress: linear)) ?? nil
            if physical == nil {
                physical = GuestPageWalk.translate(linear: linear, cr3: special.cr3, memory: memory)
            }
        }
        guard let physical else { return [] }
        // Stop at the page end: the next page may map elsewhere.
        let inPage = Int(4096 - (physical & 0xFFF))
        return (try? memory.readBytes(at: GuestAddress(physical), count: min(15, inPage))) ?? []
    }
}

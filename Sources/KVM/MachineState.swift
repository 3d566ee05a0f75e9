import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The VM-wide state KVM keeps besides memory and vCPUs: the two PICs and the IOAPIC, the
/// i8254 and kvm-clock, as raw KVM structures (see `VCPUState` for why raw).
public struct MachineState: Sendable, Equatable {
    /// kvm_irqchip for chip 0 (PIC master), 1 (PIC slave), 2 (IOAPIC).
    public var interruptControllers: [[UInt8]]
    /// kvm_pit_state2.
    public var timer: [UInt8]
    /// kvm_clock_data.
    public var clock: [UInt8]

    public init(interruptControllers: [[UInt8]], timer: [UInt8], clock: [UInt8]) {
        self.interruptControllers = interruptControllers
        self.timer = timer
        self.clock = clock
    }

    static let chipCount = 3
    static let chipSize = MemoryLayout<kvm_irqchip>.size
    static let timerSize = MemoryLayout<kvm_pit_state2>.size
    static let clockSize = MemoryLayout<kvm_clock_data>.size
}

extension KVMVirtualMachine {
    /// Reads the irqchip, PIT and clock; the vCPUs must be out of KVM_RUN.
    public func captureState() throws -> MachineState {
        var chips: [[UInt8]] = []
        for chip in 0..<MachineState.chipCount {
            var bytes = [UInt8](repeating: 0, count: MachineState.chipSize)
            bytes[0] = UInt8(chip)  // kvm_irqchip.chip_id, a little-endian u32 at offset 0
            try call(CKVM_GET_IRQCHIP, &bytes, "KVM_GET_IRQCHIP \(chip)")
            chips.append(bytes)
        }
        var timer = [UInt8](repeating: 0, count: MachineState.timerSize)
        try call(CKVM_GET_PIT2, &timer, "KVM_GET_PIT2")
        var clock = [UInt8](repeating: 0, count: MachineState.clockSize)
        try call(CKVM_GET_CLOCK, &clock, "KVM_GET_CLOCK")
        return MachineState(interruptControllers: chips, timer: timer, clock: clock)
    }

    /// Puts a captured state into this VM (after `createInterruptController` and
    /// `createProgrammableIntervalTimer`, before the vCPUs run). kvm-clock continues from
    /// the captured value: the guest sees no time pass while it was saved, and its wall
    /// clock is set afresh by whoever resumes it.
    public func restoreState(_ state: MachineState) throws {
        guard state.interruptControllers.count == MachineState.chipCount,
              state.interruptControllers.allSatisfy({ $0.count == MachineState.chipSize }),
              state.timer.count == MachineState.timerSize, state.clock.count == MachineState.clockSize else {
            throw KVMError("restoring the irqchip, PIT and clock: the saved structures do not match this host's sizes", errno: EINVAL)
        }
        for (chip, saved) in state.interruptControllers.enumerated() {
            guard saved[0] == UInt8(chip), saved[1...3].allSatisfy({ $0 == 0 }) else {
                throw KVMError("KVM_SET_IRQCHIP: the saved state of chip \(chip) names another chip", errno: EINVAL)
            }
            var bytes = saved
            try call(CKVM_SET_IRQCHIP, &bytes, "KVM_SET_IRQCHIP \(chip)")
        }
        var timer = state.timer
        try call(CKVM_SET_PIT2, &timer, "KVM_SET_PIT2")
        var clock = state.clock
        // Only the value (kvm_clock_data: u64 clock, u32 flags): KVM_CLOCK_REALTIME and
        // HOST_TSC would advance it by the time since the capture.
        for offset in 8..<12 { clock[offset] = 0 }
        try call(CKVM_SET_CLOCK, &clock, "KVM_SET_CLOCK")
    }

    /// `bytes` is exactly the size of the structure `request` moves (checked by the callers).
    private func call(_ request: UInt, _ bytes: inout [UInt8], _ name: String) throws {
        let result = bytes.withUnsafeMutableBytes { ckvm_ioctl_pointer(descriptor.raw, request, $0.baseAddress) }
        if result < 0 { throw KVMError.last(name) }
    }
}

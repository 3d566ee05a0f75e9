/// The UART's registers as the guest left them, for snapshot and restore.
extension Serial16550 {
    public struct State: Sendable, Equatable {
        public var receiveFIFO: [UInt8]
        public var interruptEnable: UInt8
        public var lineControl: UInt8
        public var modemControl: UInt8
        public var scratch: UInt8
        public var divisorLow: UInt8
        public var divisorHigh: UInt8
        public var fifoControl: UInt8
        public var transmitterInterruptPending: Bool
        public var lineAsserted: Bool

        public init(receiveFIFO: [UInt8], interruptEnable: UInt8, lineControl: UInt8, modemControl: UInt8, scratch: UInt8,
                    divisorLow: UInt8, divisorHigh: UInt8, fifoControl: UInt8, transmitterInterruptPending: Bool, lineAsserted: Bool) {
            self.receiveFIFO = receiveFIFO
            self.interruptEnable = interruptEnable
            self.lineControl = lineControl
            self.modemControl = modemControl
            self.scratch = scratch
            self.divisorLow = divisorLow
            self.divisorHigh = divisorHigh
            self.fifoControl = fifoControl
            self.transmitterInterruptPending = transmitterInterruptPending
            self.lineAsserted = lineAsserted
        }
    }

    public func captureState() -> State {
        lock.withLock {
            State(receiveFIFO: receiveFIFO, interruptEnable: interruptEnableRegister, lineControl: lineControlRegister,
                  modemControl: modemControlRegister, scratch: scratchRegister, divisorLow: divisorLow, divisorHigh: divisorHigh,
                  fifoControl: fifoControl, transmitterInterruptPending: transmitterInterruptPending, lineAsserted: lineAsserted)
        }
    }

    /// Takes a captured state. The interrupt line itself is the interrupt controller's (its
    /// state is restored with the irqchip), so nothing is driven here; the watch for an
    /// unserviced line starts afresh.
    public func restore(_ state: State) {
        lock.withLock {
            receiveFIFO = Array(state.receiveFIFO.prefix(Serial16550.receiveFIFOCapacity))
            interruptEnableRegister = state.interruptEnable & 0x0F
            lineControlRegister = state.lineControl
            modemControlRegister = state.modemControl & 0x1F
            scratchRegister = state.scratch
            divisorLow = state.divisorLow
            divisorHigh = state.divisorHigh
            fifoControl = state.fifoControl
            transmitterInterruptPending = state.transmitterInterruptPending
            lineAsserted = state.lineAsserted
            lineRaisedAt = nil
        }
    }
}

import HostOS
/// A 16550A UART as Linux's 8250 driver expects to find it on COM1: FIFOs, divisor latch,
/// scratch register, loopback for the driver's probe, and an interrupt line raised while
/// the enabled conditions (data ready, transmitter empty) hold.
public final class Serial16550: PortIODevice, @unchecked Sendable {
    public static let com1Base: UInt16 = 0x3f8
    public static let com1Interrupt: UInt32 = 4
    public static let portCount: UInt16 = 8
    static let receiveFIFOCapacity = 64

    // Register offsets
    static let data: UInt16 = 0, interruptEnable: UInt16 = 1, interruptIdentify: UInt16 = 2
    static let lineControl: UInt16 = 3, modemControl: UInt16 = 4, lineStatus: UInt16 = 5
    static let modemStatus: UInt16 = 6, scratch: UInt16 = 7

    // Bits
    static let enableReceivedData: UInt8 = 0x01, enableTransmitterEmpty: UInt8 = 0x02
    static let divisorLatchAccess: UInt8 = 0x80
    static let loopback: UInt8 = 0x10
    static let dataReady: UInt8 = 0x01, transmitterHoldingEmpty: UInt8 = 0x20, transmitterEmpty: UInt8 = 0x40
    static let noInterruptPending: UInt8 = 0x01, transmitterEmptyInterrupt: UInt8 = 0x02, receivedDataInterrupt: UInt8 = 0x04
    static let fifosEnabled: UInt8 = 0xC0

    let lock = Lock()
    private let output: @Sendable ([UInt8]) -> Void
    private let interrupt: @Sendable (Bool) -> Void
    // State below is guarded by `lock`.
    var receiveFIFO: [UInt8] = []
    var interruptEnableRegister: UInt8 = 0
    var lineControlRegister: UInt8 = 0x03
    var modemControlRegister: UInt8 = 0
    var scratchRegister: UInt8 = 0
    var divisorLow: UInt8 = 0x0C  // 9600 baud
    var divisorHigh: UInt8 = 0
    var fifoControl: UInt8 = 0
    /// The transmitter-empty interrupt is edge-like: set when THR empties, cleared by an IIR read or a write.
    var transmitterInterruptPending = false
    var lineAsserted = false
    private var raisedEdges = 0
    private var transmittedBytes = 0
    /// When the line last went high (the caller's clock), while it is high.
    var lineRaisedAt: UInt64?
    private var reassertions = 0

    /// `output` receives each byte the guest writes; `interrupt` drives the IRQ line and is
    /// called with the UART's lock held, so it must not call back into the UART.
    public init(output: @escaping @Sendable ([UInt8]) -> Void, interrupt: @escaping @Sendable (Bool) -> Void) {
        self.output = output
        self.interrupt = interrupt
    }

    /// Bytes from the host (console input) for the guest to read. Returns how many were
    /// accepted; the rest should be offered again once the guest has drained the FIFO.
    @discardableResult
    public func enqueueInput(_ bytes: [UInt8]) -> Int {
        let accepted = lock.withLock { () -> Int in
            let room = Serial16550.receiveFIFOCapacity - receiveFIFO.count
            let taken = min(room, bytes.count)
            receiveFIFO.append(contentsOf: bytes.prefix(taken))
            return taken
        }
        updateInterrupt()
        return accepted
    }

    public var hasRoomForInput: Bool {
        lock.withLock { receiveFIFO.count < Serial16550.receiveFIFOCapacity }
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        let value = lock.withLock { () -> UInt8 in readRegister(offset) }
        updateInterrupt()
        return UInt32(value)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        var transmitted: UInt8?
        lock.withLock {
            transmitted = writeRegister(offset, UInt8(truncatingIfNeeded: value))
        }
        if let transmitted { output([transmitted]) }
        updateInterrupt()
    }

    /// What the UART's interrupt logic holds now, for diagnosing a guest whose console
    /// output stalls (the 8250 driver sends user-space output only on THRE interrupts).
    public struct InterruptState: Sendable, Equatable, CustomStringConvertible {
        public var interruptEnable: UInt8
        public var modemControl: UInt8
        public var transmitInterruptPending: Bool
        public var lineAsserted: Bool
        /// Low-to-high transitions of the interrupt line so far.
        public var raisedEdges: Int
        /// Edges raised again because the guest left a raised line unserviced (see
        /// `reassertIfUnserviced`).
        public var reassertions: Int
        public var transmittedBytes: Int
        public var description: String {
            let hex = { (value: UInt8) in "0x" + String(value, radix: 16) }
            return "IER \(hex(interruptEnable)) MCR \(hex(modemControl)) THRE pending \(transmitInterruptPending) "
                + "line \(lineAsserted ? "high" : "low") edges \(raisedEdges) reasserted \(reassertions) bytes \(transmittedBytes)"
        }
    }

    public var interruptState: InterruptState {
        lock.withLock {
            InterruptState(interruptEnable: interruptEnableRegister, modemControl: modemControlRegister,
                           transmitInterruptPending: transmitterInterruptPending, lineAsserted: lineAsserted,
                           raisedEdges: raisedEdges, reassertions: reassertions, transmittedBytes: transmittedBytes)
        }
    }

    /// The interrupt reaches the guest as an edge (IRQ 4 is edge-triggered on the IOAPIC):
    /// if that edge is lost, the line stays high, no further edge can come, and Linux's
    /// 8250 driver, which sends user-space output only from THRE interrupts, stalls for
    /// good (CI saw a guest's whole /init output vanish that way). A line that has stayed
    /// high for `timeout` without the guest reading IIR is therefore lowered and raised
    /// again: a guest that merely had interrupts off gets one spurious interrupt, which
    /// its driver tolerates. Returns whether it did; `now` is the caller's clock, the
    /// same one for every call.
    @discardableResult
    public func reassertIfUnserviced(now: UInt64, timeout: UInt64) -> Bool {
        lock.withLock {
            guard lineAsserted else { return false }
            guard let raised = lineRaisedAt else {
                lineRaisedAt = now
                return false
            }
            guard now >= raised, now - raised >= timeout else { return false }
            interrupt(false)
            interrupt(true)
            lineRaisedAt = now
            reassertions += 1
            return true
        }
    }

    private var divisorLatchSelected: Bool { lineControlRegister & Serial16550.divisorLatchAccess != 0 }

    private func readRegister(_ offset: UInt16) -> UInt8 {
        switch offset {
        case Serial16550.data:
            if divisorLatchSelected { return divisorLow }
            return receiveFIFO.isEmpty ? 0 : receiveFIFO.removeFirst()
        case Serial16550.interruptEnable:
            return divisorLatchSelected ? divisorHigh : interruptEnableRegister
        case Serial16550.interruptIdentify:
            let identity = pendingInterruptIdentity()
            if identity == Serial16550.transmitterEmptyInterrupt { transmitterInterruptPending = false }
            return identity | (fifoControl & 0x01 != 0 ? Serial16550.fifosEnabled : 0)
        case Serial16550.lineControl:
            return lineControlRegister
        case Serial16550.modemControl:
            return modemControlRegister
        case Serial16550.lineStatus:
            // The host side drains output instantly, so the transmitter is always empty.
            return (receiveFIFO.isEmpty ? 0 : Serial16550.dataReady) | Serial16550.transmitterHoldingEmpty | Serial16550.transmitterEmpty
        case Serial16550.modemStatus:
            if modemControlRegister & Serial16550.loopback != 0 {
                // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (the 8250 probe checks this).
                let control = modemControlRegister
                return ((control & 0x02) << 3) | ((control & 0x01) << 5) | ((control & 0x04) << 4) | ((control & 0x08) << 4)
            }
            return 0xB0  // DCD, DSR, CTS: a cable is connected and ready
        case Serial16550.scratch:
            return scratchRegister
        default:
            return 0
        }
    }

    /// Returns a byte to transmit, if the write sent one.
    private func writeRegister(_ offset: UInt16, _ value: UInt8) -> UInt8? {
        switch offset {
        case Serial16550.data:
            if divisorLatchSelected {
                divisorLow = value
                return nil
            }
            transmitterInterruptPending = true
            if modemControlRegister & Serial16550.loopback != 0 {
                if receiveFIFO.count < Serial16550.receiveFIFOCapacity { receiveFIFO.append(value) }
                return nil
            }
            transmittedBytes += 1
            return value
        case Serial16550.interruptEnable:
            if divisorLatchSelected {
                divisorHigh = value
            } else {
                let newlyEnabledTransmit = value & Serial16550.enableTransmitterEmpty != 0
                    && interruptEnableRegister & Serial16550.enableTransmitterEmpty == 0
                interruptEnableRegister = value & 0x0F
                // Enabling THRE while the holding register is empty raises it at once (8250 behaviour Linux relies on).
                if newlyEnabledTransmit { transmitterInterruptPending = true }
            }
        case Serial16550.interruptIdentify:
            fifoControl = value
            if value & 0x02 != 0 { receiveFIFO.removeAll() }
        case Serial16550.lineControl:
            lineControlRegister = value
        case Serial16550.modemControl:
            modemControlRegister = value & 0x1F
        case Serial16550.scratch:
            scratchRegister = value
        default:
            break
        }
        return nil
    }

    private func pendingInterruptIdentity() -> UInt8 {
        if interruptEnableRegister & Serial16550.enableReceivedData != 0 && !receiveFIFO.isEmpty {
            return Serial16550.receivedDataInterrupt
        }
        if interruptEnableRegister & Serial16550.enableTransmitterEmpty != 0 && transmitterInterruptPending {
            return Serial16550.transmitterEmptyInterrupt
        }
        return Serial16550.noInterruptPending
    }

    /// Drives the line to match the pending state; only edges reach the interrupt controller.
    /// The line is driven under the lock: two threads (the vCPU's register accesses and the
    /// console-input thread) updating it could otherwise reach KVM in the opposite order to
    /// the one they decided in, leaving KVM's line low while `lineAsserted` says high, after
    /// which no edge would ever be raised again.
    private func updateInterrupt() {
        lock.withLock {
            let asserted = pendingInterruptIdentity() != Serial16550.noInterruptPending
            // OUT2 gates the UART's interrupt onto the ISA bus on PCs.
            let wanted = asserted && (modemControlRegister & 0x08 != 0)
            guard wanted != lineAsserted else { return }
            lineAsserted = wanted
            // The re-assertion watch starts on its next look (it has the clock).
            lineRaisedAt = nil
            if wanted { raisedEdges += 1 }
            interrupt(wanted)
        }
    }
}

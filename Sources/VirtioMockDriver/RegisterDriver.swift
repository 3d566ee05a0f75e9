import Virtio

/// Drives a virtio-mmio transport's registers the way Linux's virtio_mmio driver does.
public struct RegisterDriver: Sendable {
    public let transport: VirtioMMIOTransport

    public init(transport: VirtioMMIOTransport) {
        self.transport = transport
    }

    /// A 4-byte register read (little endian).
    public func read(_ offset: UInt64) -> UInt32 {
        transport.read(offset: offset, size: 4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
    }

    /// A 4-byte register write (little endian).
    public func write(_ offset: UInt64, _ value: UInt32) {
        transport.write(offset: offset, bytes: [UInt8(value & 0xff), UInt8((value >> 8) & 0xff), UInt8((value >> 16) & 0xff), UInt8(value >> 24)])
    }

    /// Negotiates `features` and sets up each queue with MockDriver's ring layout at `bases`.
    public func initialize(features: UInt64 = VirtioFeature.version1, queueSize: UInt32 = 16, bases: [UInt64]) {
        negotiate(features)
        for (index, base) in bases.enumerated() {
            setUpQueue(index, size: queueSize, descriptorTable: base, availableRing: base + 0x1000, usedRing: base + 0x2000)
        }
        write(0x070, 1 | 2 | 8 | 4)
    }

    /// Resets the device, negotiates `features`, sets up queue `i` from `drivers[i]` (its size
    /// and ring addresses) and sets DRIVER_OK. Check `transport.isActive` afterwards.
    public func initialize(features: UInt64 = VirtioFeature.version1, drivers: [MockDriver]) {
        negotiate(features)
        for (index, driver) in drivers.enumerated() {
            setUpQueue(index, size: UInt32(driver.size), descriptorTable: driver.descriptorTable,
                       availableRing: driver.availableRing, usedRing: driver.usedRing)
        }
        write(0x070, 1 | 2 | 8 | 4)
    }

    /// Status 0: the device drops everything and waits for a new setup.
    public func reset() {
        write(0x070, 0)
    }

    /// QueueNotify, as a guest's MMIO write (the VMM's ioeventfd path calls
    /// `transport.notify(queue:)` instead).
    public func notify(queue index: Int) {
        write(VirtioMMIOTransport.queueNotifyOffset, UInt32(index))
    }

    /// What an interrupt handler does: reads InterruptStatus and acknowledges what it found.
    @discardableResult
    public func acknowledgeInterrupt() -> UInt32 {
        let status = read(0x060)
        if status != 0 { write(0x064, status) }
        return status
    }

    private func negotiate(_ features: UInt64) {
        write(0x070, 0)
        write(0x070, 1)
        write(0x070, 1 | 2)
        write(0x024, 0)
        write(0x020, UInt32(truncatingIfNeeded: features))
        write(0x024, 1)
        write(0x020, UInt32(truncatingIfNeeded: features >> 32))
        write(0x070, 1 | 2 | 8)
    }

    private func setUpQueue(_ index: Int, size: UInt32, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64) {
        write(0x030, UInt32(index))
        write(0x038, size)
        write(0x080, UInt32(truncatingIfNeeded: descriptorTable))
        write(0x084, UInt32(truncatingIfNeeded: descriptorTable >> 32))
        write(0x090, UInt32(truncatingIfNeeded: availableRing))
        write(0x094, UInt32(truncatingIfNeeded: availableRing >> 32))
        write(0x0a0, UInt32(truncatingIfNeeded: usedRing))
        write(0x0a4, UInt32(truncatingIfNeeded: usedRing >> 32))
        write(0x044, 1)
    }
}

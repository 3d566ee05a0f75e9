import GuestMemory
import Synchronization
import Virtio

/// Plays the guest driver's side of a split virtqueue in plain memory: lays out the rings,
/// writes descriptor chains, makes them available and reads back the used ring. Lets every
/// device be tested (and measured) with no KVM and no guest kernel.
///
/// Layout from `base`: descriptor table at +0, available ring at +0x1000, used ring at
/// +0x2000, buffer data (for `add(_:)`) from +0x4000. Queues up to 256 entries fit.
public final class MockDriver {
    public let memory: GuestMemory
    public let size: UInt16
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64
    /// Next free spot for buffer data in guest memory.
    private var dataCursor: UInt64
    private var nextDescriptor: UInt16 = 0
    private var availableIndex: UInt16 = 0
    public private(set) var usedSeen: UInt16 = 0

    public struct Buffer: Sendable {
        public var bytes: [UInt8]
        public var writable: Bool
        /// For writable buffers: how much room the device gets.
        public var length: UInt32
        public static func readable(_ bytes: [UInt8]) -> Buffer { Buffer(bytes: bytes, writable: false, length: UInt32(bytes.count)) }
        public static func writable(_ length: Int) -> Buffer { Buffer(bytes: [], writable: true, length: UInt32(length)) }
    }

    /// A buffer already in guest memory, for `add(head:_:)` (fixed, recycled buffers).
    public struct Segment: Sendable {
        public var address: UInt64
        public var length: UInt32
        public var writable: Bool
        public init(address: UInt64, length: UInt32, writable: Bool) {
            self.address = address
            self.length = length
            self.writable = writable
        }
    }

    /// Lays out the rings at `base` without touching any device: configure the queue through
    /// the transport's registers (`RegisterDriver.initialize(features:drivers:)`), as a real
    /// driver does.
    public init(memory: GuestMemory, size: UInt16 = 16, base: UInt64 = 0x10000) {
        self.memory = memory
        self.size = size
        descriptorTable = base
        availableRing = base + 0x1000
        usedRing = base + 0x2000
        dataCursor = base + 0x4000
    }

    /// Lays out the rings at `base` and configures `queue` directly (no transport), marking
    /// it ready. `base`: where this queue's rings and data live (each queue gets its own
    /// 1 MiB area).
    public convenience init(memory: GuestMemory, queue: Virtqueue, size: UInt16 = 16, base: UInt64 = 0x10000,
                            eventIndex: Bool = false) throws {
        self.init(memory: memory, size: size, base: base)
        queue.size = size
        queue.descriptorTable = GuestAddress(descriptorTable)
        queue.availableRing = GuestAddress(availableRing)
        queue.usedRing = GuestAddress(usedRing)
        queue.eventIndex = eventIndex
        try queue.validate(memory: memory)
        queue.ready = true
    }

    /// Zeroes the rings and forgets the driver's progress, as a driver does (with fresh
    /// rings) after resetting the device; buffer data is left alone.
    public func resetRings() throws {
        try memory.fill(0, at: GuestAddress(descriptorTable), count: 16 * Int(size))
        try memory.fill(0, at: GuestAddress(availableRing), count: 6 + 2 * Int(size))
        try memory.fill(0, at: GuestAddress(usedRing), count: 6 + 8 * Int(size))
        nextDescriptor = 0
        availableIndex = 0
        usedSeen = 0
    }

    /// Places the buffers in memory, chains them, and makes the chain available. Returns
    /// the head index and each buffer's guest address. Data space is never reused: for
    /// long runs use `add(head:_:)` with buffers of your own.
    @discardableResult
    public func add(_ buffers: [Buffer]) throws -> (head: UInt16, addresses: [UInt64]) {
        var addresses: [UInt64] = []
        let head = nextDescriptor
        for (position, buffer) in buffers.enumerated() {
            let address = dataCursor
            dataCursor += (UInt64(buffer.length) + 15) & ~15
            if !buffer.writable { try memory.write(bytes: buffer.bytes, at: GuestAddress(address)) }
            let index = (head + UInt16(position)) % size
            let isLast = position == buffers.count - 1
            try writeDescriptor(index, address: address, length: buffer.length,
                                flags: (buffer.writable ? 2 : 0) | (isLast ? 0 : 1), next: (index + 1) % size)
            addresses.append(address)
        }
        nextDescriptor = (head + UInt16(buffers.count)) % size
        try makeAvailable(head)
        return (head, addresses)
    }

    /// Chains `segments` (already in guest memory; nothing is copied) in descriptors `head`,
    /// `head + 1`, ... and makes the chain available. The caller owns those descriptors until
    /// the chain comes back in the used ring; `add(_:)` must not be mixed with this.
    public func add(head: UInt16, _ segments: [Segment]) throws {
        for (position, segment) in segments.enumerated() {
            let index = (head + UInt16(position)) % size
            let isLast = position == segments.count - 1
            try writeDescriptor(index, address: segment.address, length: segment.length,
                                flags: (segment.writable ? 2 : 0) | (isLast ? 0 : 1), next: (index + 1) % size)
        }
        try makeAvailable(head)
    }

    public func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16) throws {
        let base = GuestAddress(descriptorTable + UInt64(index) * 16)
        try memory.write(address, at: base)
        try memory.write(length, at: GuestAddress(base.value + 8))
        try memory.write(flags, at: GuestAddress(base.value + 12))
        try memory.write(next, at: GuestAddress(base.value + 14))
    }

    /// Puts `head` in the available ring and publishes it (descriptors and ring entry are
    /// visible before the index, as the device, possibly on another thread, expects).
    public func makeAvailable(_ head: UInt16) throws {
        try memory.write(head, at: GuestAddress(availableRing + 4 + 2 * UInt64(availableIndex % size)))
        availableIndex &+= 1
        atomicMemoryFence(ordering: .releasing)
        try memory.write(availableIndex, at: GuestAddress(availableRing + 2))
    }

    /// Publishes `head` as Linux's split-ring driver does with VIRTIO_RING_F_EVENT_IDX and
    /// says whether it would notify the device: the index, a full barrier, then avail_event
    /// read and compared (vring_need_event: notify when avail_event lies in [old, new)).
    public func publishAndDecideNotify(_ head: UInt16) throws -> Bool {
        let old = availableIndex
        try makeAvailable(head)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let availableEvent = try memory.read(UInt16.self, at: GuestAddress(usedRing + 4 + 8 * UInt64(size)))
        return availableIndex &- availableEvent &- 1 < availableIndex &- old
    }

    /// Sets the available ring's idx directly (to simulate a misbehaving driver).
    public func setAvailableIndex(_ value: UInt16) throws {
        availableIndex = value
        try memory.write(value, at: GuestAddress(availableRing + 2))
    }

    public func setUsedEvent(_ value: UInt16) throws {
        try memory.write(value, at: GuestAddress(availableRing + 4 + 2 * UInt64(size)))
    }

    public func setNoInterruptFlag(_ on: Bool) throws {
        try memory.write(UInt16(on ? 1 : 0), at: GuestAddress(availableRing))
    }

    /// Used entries the device returned since the last call: (head, bytes written).
    public func takeUsed() throws -> [(head: UInt16, length: UInt32)] {
        var result: [(UInt16, UInt32)] = []
        try takeUsed { result.append(($0, $1)) }
        return result
    }

    /// Calls `body` with each used entry (head, bytes written) returned since the last call;
    /// returns how many there were. Allocates nothing.
    @discardableResult
    public func takeUsed(_ body: (_ head: UInt16, _ length: UInt32) throws -> Void) throws -> Int {
        let usedIndex = try memory.read(UInt16.self, at: GuestAddress(usedRing + 2))
        // Entries are read only after the index that published them.
        atomicMemoryFence(ordering: .acquiring)
        var count = 0
        while usedSeen != usedIndex {
            let element = GuestAddress(usedRing + 4 + 8 * UInt64(usedSeen % size))
            let head = UInt16(truncatingIfNeeded: try memory.read(UInt32.self, at: element))
            let length = try memory.read(UInt32.self, at: GuestAddress(element.value + 4))
            usedSeen &+= 1
            count += 1
            try body(head, length)
        }
        return count
    }

    public func read(_ address: UInt64, _ count: Int) throws -> [UInt8] {
        try memory.readBytes(at: GuestAddress(address), count: count)
    }

    public static func makeMemory(megabytes: UInt64 = 16) throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), megabytes << 20)])
    }
}

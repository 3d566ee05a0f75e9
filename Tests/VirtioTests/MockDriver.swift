import GuestMemory
@testable import Virtio

/// Plays the guest driver's side of a split virtqueue in plain memory: lays out the rings,
/// writes descriptor chains, makes them available and reads back the used ring. Lets every
/// device be tested with no KVM and no guest kernel.
final class MockDriver {
    let memory: GuestMemory
    let queue: Virtqueue
    let size: UInt16
    let descriptorTable: UInt64
    let availableRing: UInt64
    let usedRing: UInt64
    /// Next free spot for buffer data in guest memory.
    private var dataCursor: UInt64
    private var nextDescriptor: UInt16 = 0
    private var availableIndex: UInt16 = 0
    private(set) var usedSeen: UInt16 = 0

    struct Buffer {
        var bytes: [UInt8]
        var writable: Bool
        /// For writable buffers: how much room the device gets.
        var length: UInt32
        static func readable(_ bytes: [UInt8]) -> Buffer { Buffer(bytes: bytes, writable: false, length: UInt32(bytes.count)) }
        static func writable(_ length: Int) -> Buffer { Buffer(bytes: [], writable: true, length: UInt32(length)) }
    }

    /// `base`: where this queue's rings and data live (each queue gets its own 1 MiB area).
    init(memory: GuestMemory, queue: Virtqueue, size: UInt16 = 16, base: UInt64 = 0x10000, eventIndex: Bool = false) throws {
        self.memory = memory
        self.queue = queue
        self.size = size
        descriptorTable = base
        availableRing = base + 0x1000
        usedRing = base + 0x2000
        dataCursor = base + 0x4000
        queue.size = size
        queue.descriptorTable = GuestAddress(descriptorTable)
        queue.availableRing = GuestAddress(availableRing)
        queue.usedRing = GuestAddress(usedRing)
        queue.eventIndex = eventIndex
        try queue.validate(memory: memory)
        queue.ready = true
    }

    /// Places the buffers in memory, chains them, and makes the chain available. Returns
    /// the head index and each buffer's guest address.
    @discardableResult
    func add(_ buffers: [Buffer]) throws -> (head: UInt16, addresses: [UInt64]) {
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

    func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16) throws {
        let base = GuestAddress(descriptorTable + UInt64(index) * 16)
        try memory.write(address, at: base)
        try memory.write(length, at: GuestAddress(base.value + 8))
        try memory.write(flags, at: GuestAddress(base.value + 12))
        try memory.write(next, at: GuestAddress(base.value + 14))
    }

    func makeAvailable(_ head: UInt16) throws {
        try memory.write(head, at: GuestAddress(availableRing + 4 + 2 * UInt64(availableIndex % size)))
        availableIndex &+= 1
        try memory.write(availableIndex, at: GuestAddress(availableRing + 2))
    }

    /// Sets the available ring's idx directly (to simulate a misbehaving driver).
    func setAvailableIndex(_ value: UInt16) throws {
        availableIndex = value
        try memory.write(value, at: GuestAddress(availableRing + 2))
    }

    func setUsedEvent(_ value: UInt16) throws {
        try memory.write(value, at: GuestAddress(availableRing + 4 + 2 * UInt64(size)))
    }

    func setNoInterruptFlag(_ on: Bool) throws {
        try memory.write(UInt16(on ? 1 : 0), at: GuestAddress(availableRing))
    }

    /// Used entries the device returned since the last call: (head, bytes written).
    func takeUsed() throws -> [(head: UInt16, length: UInt32)] {
        let usedIndex = try memory.read(UInt16.self, at: GuestAddress(usedRing + 2))
        var result: [(UInt16, UInt32)] = []
        while usedSeen != usedIndex {
            let element = GuestAddress(usedRing + 4 + 8 * UInt64(usedSeen % size))
            result.append((UInt16(try memory.read(UInt32.self, at: element)), try memory.read(UInt32.self, at: GuestAddress(element.value + 4))))
            usedSeen &+= 1
        }
        return result
    }

    func read(_ address: UInt64, _ count: Int) throws -> [UInt8] {
        try memory.readBytes(at: GuestAddress(address), count: count)
    }

    static func makeMemory(megabytes: UInt64 = 16) throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), megabytes << 20)])
    }
}

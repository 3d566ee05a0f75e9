import GuestMemory

/// One buffer of a descriptor chain, already checked to lie inside guest RAM.
public struct Descriptor: Sendable, Equatable {
    public let address: GuestAddress
    public let length: UInt32
    /// Device-writable (VIRTQ_DESC_F_WRITE); otherwise the device may only read it.
    public let isWriteOnly: Bool
}

/// A request the driver made available: the head index to return in the used ring and
/// the buffers, readable ones first as the virtio spec requires.
public struct DescriptorChain: Sendable, Equatable {
    public let head: UInt16
    public let descriptors: [Descriptor]

    public var readable: [Descriptor] { descriptors.filter { !$0.isWriteOnly } }
    public var writable: [Descriptor] { descriptors.filter(\.isWriteOnly) }
    public var readableLength: Int { readable.reduce(0) { $0 + Int($1.length) } }
    public var writableLength: Int { writable.reduce(0) { $0 + Int($1.length) } }
}

public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    case notReady
    case invalidSize(UInt16)
    case ringOutsideMemory(String)
    case misaligned(String)
    case tooManyAvailable(UInt16)
    case headOutOfRange(UInt16)
    case nextOutOfRange(UInt16)
    case chainTooLong
    case nestedIndirect
    case invalidIndirectTable(length: UInt32)
    case bufferOutsideMemory(address: GuestAddress, length: UInt32)
    case readableAfterWritable

    public var description: String {
        switch self {
        case .notReady: return "queue is not ready"
        case .invalidSize(let size): return "queue size \(size) is not a power of two within the maximum"
        case .ringOutsideMemory(let ring): return "the \(ring) ring lies outside guest memory"
        case .misaligned(let ring): return "the \(ring) ring is misaligned"
        case .tooManyAvailable(let count): return "the driver made \(count) buffers available, more than the queue holds"
        case .headOutOfRange(let index): return "descriptor head \(index) is out of range"
        case .nextOutOfRange(let index): return "descriptor next \(index) is out of range"
        case .chainTooLong: return "descriptor chain is longer than the queue (a loop?)"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .invalidIndirectTable(let length): return "indirect table of \(length) bytes is not a whole number of descriptors"
        case .bufferOutsideMemory(let address, let length): return "buffer of \(length) bytes at \(address) is outside guest memory"
        case .readableAfterWritable: return "a device-readable buffer follows a device-writable one"
        }
    }
}

/// The device side of a split virtqueue (virtio 1.x, section 2.7). Every index, length and
/// address the driver controls is checked before use; a bad chain is an error for that
/// request, never an out-of-bounds access or an endless loop.
public final class Virtqueue: @unchecked Sendable {
    static let descriptorSize: UInt64 = 16
    static let flagNext: UInt16 = 1, flagWrite: UInt16 = 2, flagIndirect: UInt16 = 4
    static let availableNoInterrupt: UInt16 = 1

    public let maximumSize: UInt16
    // Configuration written by the driver through the transport (guarded by the transport's lock).
    public var size: UInt16
    public var ready = false
    public var descriptorTable = GuestAddress(0)
    public var availableRing = GuestAddress(0)
    public var usedRing = GuestAddress(0)
    /// VIRTIO_F_RING_EVENT_IDX negotiated: notifications use used_event / avail_event.
    public var eventIndex = false
    // Device progress
    public internal(set) var nextAvailable: UInt16 = 0
    public internal(set) var nextUsed: UInt16 = 0
    var lastSignalledUsed: UInt16 = 0

    public init(maximumSize: UInt16) {
        self.maximumSize = maximumSize
        self.size = maximumSize
    }

    public func reset() {
        size = maximumSize
        ready = false
        descriptorTable = GuestAddress(0)
        availableRing = GuestAddress(0)
        usedRing = GuestAddress(0)
        eventIndex = false
        nextAvailable = 0
        nextUsed = 0
        lastSignalledUsed = 0
    }

    /// Checks the rings the driver configured before the queue is used.
    public func validate(memory: GuestMemory) throws {
        guard size > 0, size <= maximumSize, size & (size - 1) == 0 else { throw VirtqueueError.invalidSize(size) }
        let count = UInt64(size)
        guard descriptorTable.value % 16 == 0 else { throw VirtqueueError.misaligned("descriptor") }
        guard availableRing.value % 2 == 0 else { throw VirtqueueError.misaligned("available") }
        guard usedRing.value % 4 == 0 else { throw VirtqueueError.misaligned("used") }
        guard memory.contains(descriptorTable, length: count * Virtqueue.descriptorSize) else { throw VirtqueueError.ringOutsideMemory("descriptor") }
        guard memory.contains(availableRing, length: 6 + 2 * count) else { throw VirtqueueError.ringOutsideMemory("available") }
        guard memory.contains(usedRing, length: 6 + 8 * count) else { throw VirtqueueError.ringOutsideMemory("used") }
    }

    /// The next chain the driver made available, or nil when there is none.
    public func pop(memory: GuestMemory) throws -> DescriptorChain? {
        guard ready else { throw VirtqueueError.notReady }
        var availableIndex = try memory.read(UInt16.self, at: availableRing.advanced(by: 2))
        var pending = availableIndex &- nextAvailable
        if pending == 0 {
            guard eventIndex else { return nil }
            // Before concluding the ring is empty, the avail_event the last pop wrote must be
            // visible to the driver, and idx read again after it. The driver publishes idx,
            // then (after a full barrier of its own) reads avail_event to decide whether to
            // notify; x86 lets our load of idx complete before our store of avail_event
            // drains, so without a full barrier both sides can read the other's old value:
            // the driver sees no need to notify, we see no entry, and the request waits for
            // good (a partition scan that never finished, issue 15 fault 1).
            atomicThreadFenceSequential()
            availableIndex = try memory.read(UInt16.self, at: availableRing.advanced(by: 2))
            pending = availableIndex &- nextAvailable
            if pending == 0 { return nil }
        }
        guard pending <= size else { throw VirtqueueError.tooManyAvailable(pending) }
        let slot = UInt64(nextAvailable % size)
        let head = try memory.read(UInt16.self, at: availableRing.advanced(by: 4 + 2 * slot))
        nextAvailable &+= 1
        if eventIndex {
            // avail_event: ask to be notified again once the driver adds past this entry.
            try memory.write(nextAvailable, at: availEventAddress())
        }
        guard head < size else { throw VirtqueueError.headOutOfRange(head) }
        return DescriptorChain(head: head, descriptors: try walk(from: head, memory: memory))
    }

    /// Where the device publishes avail_event (VIRTIO_F_EVENT_IDX): right after the used
    /// ring's entries.
    public func availEventAddress() throws(GuestMemoryError) -> GuestAddress {
        try usedRing.advanced(by: 4 + 8 * UInt64(size))
    }

    /// Gives back the chain the last `pop` returned, unused: it is popped again next time
    /// (a receive queue's buffer when no frame was waiting after all).
    public func undoPop(memory: GuestMemory) throws {
        nextAvailable &-= 1
        if eventIndex {
            try memory.write(nextAvailable, at: availEventAddress())
        }
    }

    /// Gives back the last `count` popped chains, unused, leaving avail_event where the
    /// pops put it (past them): the driver's next buffer then still notifies, which is what
    /// a device waiting for more buffers than are available needs.
    public func rewind(_ count: Int) {
        precondition(count >= 0 && count <= Int(size), "rewinding \(count) chains of a \(size)-entry queue")
        nextAvailable &-= UInt16(truncatingIfNeeded: count)
    }

    private func walk(from head: UInt16, memory: GuestMemory) throws -> [Descriptor] {
        var result: [Descriptor] = []
        var table = descriptorTable
        var tableSize = UInt64(size)
        var index = UInt64(head)
        var visited = 0
        var inIndirect = false
        var sawWritable = false
        while true {
            visited += 1
            guard visited <= Int(tableSize) else { throw VirtqueueError.chainTooLong }
            let base = try table.advanced(by: index * Virtqueue.descriptorSize)
            let address = try memory.read(UInt64.self, at: base)
            let length = try memory.read(UInt32.self, at: base.advanced(by: 8))
            let flags = try memory.read(UInt16.self, at: base.advanced(by: 12))
            let next = try memory.read(UInt16.self, at: base.advanced(by: 14))

            if flags & Virtqueue.flagIndirect != 0 {
                guard !inIndirect else { throw VirtqueueError.nestedIndirect }
                guard length > 0, length % 16 == 0, length / 16 <= 0x10000 else { throw VirtqueueError.invalidIndirectTable(length: length) }
                guard memory.contains(GuestAddress(address), length: UInt64(length)) else {
                    throw VirtqueueError.bufferOutsideMemory(address: GuestAddress(address), length: length)
                }
                // The indirect table replaces the rest of the chain.
                inIndirect = true
                table = GuestAddress(address)
                tableSize = UInt64(length / 16)
                index = 0
                visited = 0
                continue
            }
            let writable = flags & Virtqueue.flagWrite != 0
            if writable { sawWritable = true } else if sawWritable { throw VirtqueueError.readableAfterWritable }
            guard memory.contains(GuestAddress(address), length: UInt64(length)) || length == 0 else {
                throw VirtqueueError.bufferOutsideMemory(address: GuestAddress(address), length: length)
            }
            result.append(Descriptor(address: GuestAddress(address), length: length, isWriteOnly: writable))
            guard flags & Virtqueue.flagNext != 0 else { return result }
            guard UInt64(next) < tableSize else { throw VirtqueueError.nextOutOfRange(next) }
            index = UInt64(next)
        }
    }

    /// Returns a finished chain to the driver with the number of bytes written into it.
    public func pushUsed(head: UInt16, length: UInt32, memory: GuestMemory) throws {
        let slot = UInt64(nextUsed % size)
        let element = try usedRing.advanced(by: 4 + 8 * slot)
        try memory.write(UInt32(head), at: element)
        try memory.write(length, at: element.advanced(by: 4))
        nextUsed &+= 1
        // The element must be visible before the index that publishes it.
        atomicThreadFenceRelease()
        try memory.write(nextUsed, at: usedRing.advanced(by: 2))
    }

    /// Whether the driver wants an interrupt for the used entries added since the last one.
    public func needsNotification(memory: GuestMemory) throws -> Bool {
        atomicThreadFenceSequential()
        defer { lastSignalledUsed = nextUsed }
        if eventIndex {
            let usedEvent = try memory.read(UInt16.self, at: availableRing.advanced(by: 4 + 2 * UInt64(size)))
            // vring_need_event: notify if used_event lies in (old, new].
            return (nextUsed &- usedEvent &- 1) < (nextUsed &- lastSignalledUsed)
        }
        let flags = try memory.read(UInt16.self, at: availableRing)
        return flags & Virtqueue.availableNoInterrupt == 0
    }
}

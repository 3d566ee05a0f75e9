import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver

@Suite struct VirtqueueTests {
    let memory: GuestMemory
    let queue = Virtqueue(maximumSize: 256)
    let driver: MockDriver

    init() throws {
        memory = try MockDriver.makeMemory()
        driver = try MockDriver(memory: memory, queue: queue)
    }

    @Test func popsChainsInOrderWithReadableThenWritableBuffers() throws {
        let (head, addresses) = try driver.add([.readable([1, 2, 3]), .readable([4]), .writable(8)])
        let chain = try #require(try queue.pop(memory: memory))
        #expect(chain.head == head)
        #expect(chain.readable.map(\.length) == [3, 1])
        #expect(chain.writable.map(\.address.value) == [addresses[2]])
        #expect(try chain.readAll(memory: memory) == [1, 2, 3, 4])
        #expect(try queue.pop(memory: memory) == nil)
    }

    @Test func usedEntriesReachTheDriver() throws {
        try driver.add([.writable(4)])
        let chain = try #require(try queue.pop(memory: memory))
        #expect(try chain.write([9, 9], memory: memory) == 2)
        try queue.pushUsed(head: chain.head, length: 2, memory: memory)
        let used = try driver.takeUsed()
        #expect(used.count == 1 && used[0].head == chain.head && used[0].length == 2)
    }

    @Test func writesSpanSeveralBuffersAndStopWhenFull() throws {
        let (_, addresses) = try driver.add([.writable(2), .writable(3)])
        let chain = try #require(try queue.pop(memory: memory))
        #expect(try chain.write([1, 2, 3, 4, 5, 6, 7], memory: memory) == 5)
        #expect(try driver.read(addresses[0], 2) == [1, 2])
        #expect(try driver.read(addresses[1], 3) == [3, 4, 5])
    }

    @Test func loopingChainIsRejected() throws {
        try driver.writeDescriptor(0, address: 0x200000, length: 4, flags: 1, next: 1)
        try driver.writeDescriptor(1, address: 0x200000, length: 4, flags: 1, next: 0)
        try driver.makeAvailable(0)
        #expect(throws: VirtqueueError.chainTooLong) { try queue.pop(memory: memory) }
    }

    @Test func outOfRangeIndicesAndAddressesAreRejected() throws {
        try driver.writeDescriptor(0, address: 0x200000, length: 4, flags: 1, next: 200)
        try driver.makeAvailable(0)
        #expect(throws: VirtqueueError.nextOutOfRange(200)) { try queue.pop(memory: memory) }
        try driver.makeAvailable(99)
        #expect(throws: VirtqueueError.headOutOfRange(99)) { try queue.pop(memory: memory) }
        try driver.writeDescriptor(1, address: 0xFFFF_FFFF_0000, length: 4096, flags: 0, next: 0)
        try driver.makeAvailable(1)
        #expect(throws: VirtqueueError.bufferOutsideMemory(address: GuestAddress(0xFFFF_FFFF_0000), length: 4096)) { try queue.pop(memory: memory) }
        try driver.writeDescriptor(2, address: (16 << 20) - 2, length: 4, flags: 0, next: 0)
        try driver.makeAvailable(2)
        #expect(throws: VirtqueueError.self) { try queue.pop(memory: memory) }
    }

    @Test func availableIndexJumpingPastTheQueueIsRejected() throws {
        try driver.setAvailableIndex(17)
        #expect(throws: VirtqueueError.tooManyAvailable(17)) { try queue.pop(memory: memory) }
    }

    @Test func zeroLengthBuffersAreAccepted() throws {
        try driver.add([.readable([]), .writable(0)])
        let chain = try #require(try queue.pop(memory: memory))
        #expect(chain.descriptors.count == 2 && chain.readableLength == 0)
    }

    @Test func readableAfterWritableIsRejected() throws {
        try driver.add([.writable(4), .readable([1])])
        #expect(throws: VirtqueueError.readableAfterWritable) { try queue.pop(memory: memory) }
    }

    @Test func indirectTablesAreFollowedOnceAndChecked() throws {
        let table: UInt64 = 0x300000
        // An indirect table of two descriptors: readable 2 bytes, writable 4 bytes.
        for (index, (address, length, flags)) in [(UInt64(0x301000), UInt32(2), UInt16(1)), (0x302000, 4, 2)].enumerated() {
            let base = GuestAddress(table + UInt64(index) * 16)
            try memory.write(address, at: base)
            try memory.write(length, at: GuestAddress(base.value + 8))
            try memory.write(flags, at: GuestAddress(base.value + 12))
            try memory.write(UInt16(index + 1), at: GuestAddress(base.value + 14))
        }
        try driver.writeDescriptor(5, address: table, length: 32, flags: 4, next: 0)
        try driver.makeAvailable(5)
        let chain = try #require(try queue.pop(memory: memory))
        #expect(chain.head == 5 && chain.readableLength == 2 && chain.writableLength == 4)

        // Nested indirect, and a table that is not a whole number of descriptors
        try memory.write(UInt16(4), at: GuestAddress(table + 12))
        try driver.makeAvailable(5)
        #expect(throws: VirtqueueError.nestedIndirect) { try queue.pop(memory: memory) }
        try driver.writeDescriptor(6, address: table, length: 24, flags: 4, next: 0)
        try driver.makeAvailable(6)
        #expect(throws: VirtqueueError.invalidIndirectTable(length: 24)) { try queue.pop(memory: memory) }
    }

    @Test func queueConfigurationIsValidated() throws {
        let other = Virtqueue(maximumSize: 256)
        other.size = 100
        #expect(throws: VirtqueueError.invalidSize(100)) { try other.validate(memory: memory) }
        other.size = 16
        other.descriptorTable = GuestAddress(0x1008)
        #expect(throws: VirtqueueError.misaligned("descriptor")) { try other.validate(memory: memory) }
        other.descriptorTable = GuestAddress((16 << 20) - 0x80)  // 256-byte table, 128 bytes past the end
        #expect(throws: VirtqueueError.ringOutsideMemory("descriptor")) { try other.validate(memory: memory) }
        other.descriptorTable = GuestAddress(0x1000)
        other.ready = false
        #expect(throws: VirtqueueError.notReady) { try other.pop(memory: memory) }
    }

    @Test func notificationSuppressionWithoutEventIndex() throws {
        try driver.add([.writable(1)])
        let chain = try #require(try queue.pop(memory: memory))
        try queue.pushUsed(head: chain.head, length: 0, memory: memory)
        #expect(try queue.needsNotification(memory: memory))
        try driver.setNoInterruptFlag(true)
        #expect(try !queue.needsNotification(memory: memory))
    }

    @Test func notificationSuppressionWithEventIndex() throws {
        let eventQueue = Virtqueue(maximumSize: 256)
        let eventDriver = try MockDriver(memory: memory, queue: eventQueue, base: 0x400000, eventIndex: true)
        try eventDriver.setUsedEvent(1)  // interrupt once the second used entry appears
        for expected in [false, true, false] {
            try eventDriver.add([.writable(1)])
            let chain = try #require(try eventQueue.pop(memory: memory))
            try eventQueue.pushUsed(head: chain.head, length: 0, memory: memory)
            #expect(try eventQueue.needsNotification(memory: memory) == expected)
        }
        // avail_event tells the driver which entry the device will look at next.
        #expect(try memory.read(UInt16.self, at: GuestAddress(0x400000 + 0x2000 + 4 + 8 * 16)) == 3)
    }

    @Test func seededRandomDriverNeverCrashesTheQueue() throws {
        var state: UInt64 = 0x5eed
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 17 }
        var errors = 0, chains = 0
        for _ in 0..<2000 {
            for index in 0..<16 {
                try driver.writeDescriptor(UInt16(index), address: next() % (20 << 20), length: UInt32(next() % 0x3000),
                                           flags: UInt16(next() % 8), next: UInt16(next() % 24))
            }
            try driver.makeAvailable(UInt16(next() % 20))
            do {
                if let chain = try queue.pop(memory: memory) {
                    chains += 1
                    _ = try? chain.readAll(memory: memory)
                    _ = try? chain.write([1, 2, 3], memory: memory)
                }
            } catch is VirtqueueError {
                errors += 1
            }
        }
        #expect(errors > 0 && chains > 0)
    }
}

import GuestMemory
import Testing

@Suite struct GuestMemoryTests {
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory(ranges: [(GuestAddress(0), 0x10000), (GuestAddress(0x100000), 0x10000)])
    }

    @Test func valuesRoundTripLittleEndian() throws {
        try memory.write(UInt32(0x1122_3344), at: GuestAddress(0x100))
        #expect(try memory.read(UInt32.self, at: GuestAddress(0x100)) == 0x1122_3344)
        #expect(try memory.readBytes(at: GuestAddress(0x100), count: 4) == [0x44, 0x33, 0x22, 0x11])
        try memory.write(UInt64.max, at: GuestAddress(0x10_0000 + 0xFFF8))
        #expect(try memory.read(UInt64.self, at: GuestAddress(0x10_0000 + 0xFFF8)) == .max)
    }

    @Test func bytesAndFillStayInsideTheirRange() throws {
        try memory.write(bytes: [1, 2, 3, 4, 5], at: GuestAddress(0x200))
        try memory.fill(0, at: GuestAddress(0x201), count: 3)
        #expect(try memory.readBytes(at: GuestAddress(0x200), count: 5) == [1, 0, 0, 0, 5])
    }

    @Test func accessesOutsideRAMAreRejected() {
        // In the gap between the regions
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x20000), length: 4)) {
            try memory.read(UInt32.self, at: GuestAddress(0x20000))
        }
        // Straddling the end of the first region
        #expect(throws: GuestMemoryError.self) { try memory.write(UInt64(1), at: GuestAddress(0xFFFC)) }
        // Far beyond, and at the top of the address space (no wrap-around)
        #expect(throws: GuestMemoryError.self) { try memory.read(UInt8.self, at: GuestAddress(UInt64.max)) }
        #expect(throws: GuestMemoryError.self) { try memory.readBytes(at: GuestAddress(0xFFFF_FFFF_FFFF_FFF0), count: 0x20) }
        #expect(throws: GuestMemoryError.self) { try memory.readBytes(at: GuestAddress(0x100), count: 0x10000) }
    }

    @Test func containsReportsWholeRanges() {
        #expect(memory.contains(GuestAddress(0xFFFF)))
        #expect(!memory.contains(GuestAddress(0xFFFF), length: 2))
        #expect(memory.totalSize == 0x20000)
    }

    @Test func invalidLayoutsAreRejected() {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: []) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(GuestAddress(0x800), 0x1000)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(GuestAddress(0), 0x1800)]) }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(ranges: [(GuestAddress(0), 0x2000), (GuestAddress(0x1000), 0x1000)])
        }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(GuestAddress(0xFFFF_FFFF_FFFF_F000), 0x2000)]) }
    }

    @Test func guestAddressArithmeticDetectsOverflow() {
        #expect(GuestAddress(UInt64.max).adding(1) == nil)
        #expect(GuestAddress(0x1000).adding(0x10) == GuestAddress(0x1010))
        #expect(GuestAddress(0x1FFF).alignedDown(to: 0x1000) == GuestAddress(0x1000))
    }
}

/// All guest RAM. Every access is checked to lie inside a single region; nothing the guest
/// puts in a pointer can make the VMM touch host memory outside the mappings.
public final class GuestMemory: Sendable {
    public let regions: [GuestMemoryRegion]

    /// Maps each (start, size) range. Ranges must be page-aligned, sorted and disjoint.
    public convenience init(ranges: [(start: GuestAddress, size: UInt64)]) throws {
        try GuestMemory.checkLayout(ranges)
        try self.init(checkedRegions: ranges.map { try GuestMemoryRegion(start: $0.start, size: $0.size) }, ranges: ranges)
    }

    init(checkedRegions: [GuestMemoryRegion], ranges: [(start: GuestAddress, size: UInt64)]) throws {
        try GuestMemory.checkLayout(ranges)
        regions = checkedRegions
    }

    static func checkLayout(_ ranges: [(start: GuestAddress, size: UInt64)]) throws {
        guard !ranges.isEmpty else { throw GuestMemoryError.invalidLayout("no memory regions") }
        var previousEnd: UInt64 = 0
        for (index, range) in ranges.enumerated() {
            guard range.start.value % 4096 == 0 else {
                throw GuestMemoryError.invalidLayout("region \(index) starts at unaligned \(range.start)")
            }
            guard index == 0 || range.start.value >= previousEnd else {
                throw GuestMemoryError.invalidLayout("region \(index) overlaps or is out of order")
            }
            guard range.start.adding(range.size) != nil else {
                throw GuestMemoryError.invalidLayout("region \(index) wraps past the end of the address space")
            }
            previousEnd = range.start.value + range.size
        }
    }

    public var totalSize: UInt64 { regions.reduce(0) { $0 + $1.size } }

    public func contains(_ address: GuestAddress, length: UInt64 = 1) -> Bool {
        regions.contains { $0.pointer(at: address, length: length) != nil }
    }

    private func pointer(at address: GuestAddress, length: UInt64) throws -> UnsafeMutableRawPointer {
        for region in regions {
            if let pointer = region.pointer(at: address, length: length) { return pointer }
        }
        throw GuestMemoryError.outOfRange(address: address, length: length)
    }

    public func read<T: FixedWidthInteger>(_ type: T.Type, at address: GuestAddress) throws -> T {
        let source = try pointer(at: address, length: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    public func write<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws {
        let destination = try pointer(at: address, length: UInt64(MemoryLayout<T>.size))
        destination.storeBytes(of: value.littleEndian, as: T.self)
    }

    public func readBytes(at address: GuestAddress, count: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        let source = try pointer(at: address, length: UInt64(count))
        return Array(UnsafeRawBufferPointer(start: source, count: count))
    }

    public func write(bytes: some Collection<UInt8>, at address: GuestAddress) throws {
        guard !bytes.isEmpty else { return }
        let destination = try pointer(at: address, length: UInt64(bytes.count))
        let buffer = UnsafeMutableRawBufferPointer(start: destination, count: bytes.count)
        buffer.copyBytes(from: bytes)
    }

    /// The host bytes behind [address, address + count), checked like every other access:
    /// for vectored I/O (readv/writev) straight between a host descriptor and guest RAM,
    /// with no copy in between. Valid while this GuestMemory lives (its regions are
    /// unmapped only when it goes); what the guest does to those bytes meanwhile is its
    /// business, as with a DMA buffer on real hardware.
    public func hostBuffer(at address: GuestAddress, count: Int) throws -> UnsafeMutableRawBufferPointer {
        guard count > 0 else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return UnsafeMutableRawBufferPointer(start: try pointer(at: address, length: UInt64(count)), count: count)
    }

    public func fill(_ byte: UInt8, at address: GuestAddress, count: Int) throws {
        guard count > 0 else { return }
        let destination = try pointer(at: address, length: UInt64(count))
        destination.initializeMemory(as: UInt8.self, repeating: byte, count: count)
    }
}

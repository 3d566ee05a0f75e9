import CLinux
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

    /// One access of the whole value (see `clinux_load16`): a guest vCPU may be writing the
    /// field at this moment (a virtqueue's idx). A generic load left unspecialised (as in
    /// every call from another module, optimised or not) copies through memcpy, which for
    /// 2 bytes loads them separately: a device once read idx 0x01FF between 0x00FF and
    /// 0x0100, 257 entries "available" in a 256-entry ring (fewer outstanding, and it would
    /// have served slots the driver never filled).
    public func read<T: FixedWidthInteger>(_ type: T.Type, at address: GuestAddress) throws -> T {
        let source = try pointer(at: address, length: UInt64(MemoryLayout<T>.size))
        switch MemoryLayout<T>.size {
        case 2: return T(truncatingIfNeeded: UInt16(littleEndian: clinux_load16(source)))
        case 4: return T(truncatingIfNeeded: UInt32(littleEndian: clinux_load32(source)))
        case 8: return T(truncatingIfNeeded: UInt64(littleEndian: clinux_load64(source)))
        default: return T(littleEndian: source.loadUnaligned(as: T.self))
        }
    }

    /// One access of the whole value, as `read`: the guest may be reading the field now.
    public func write<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws {
        let destination = try pointer(at: address, length: UInt64(MemoryLayout<T>.size))
        switch MemoryLayout<T>.size {
        case 2: clinux_store16(destination, UInt16(truncatingIfNeeded: value).littleEndian)
        case 4: clinux_store32(destination, UInt32(truncatingIfNeeded: value).littleEndian)
        case 8: clinux_store64(destination, UInt64(truncatingIfNeeded: value).littleEndian)
        default: destination.storeBytes(of: value.littleEndian, as: T.self)
        }
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

import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// One contiguous stretch of guest RAM mapped into this process: a memfd of its own on a
/// fresh boot (so a snapshot can ask which pages were ever written), or a private
/// copy-on-write mapping of a snapshot's memory file on a restore (clones share the file's
/// pages until they write).
public final class GuestMemoryRegion: @unchecked Sendable {
    public let start: GuestAddress
    public let size: UInt64
    // Shared with the vCPUs through KVM; concurrent guest access is the guest's business,
    // exactly as on real hardware. The VMM only copies bytes in and out, bounds-checked.
    let base: UnsafeMutableRawPointer
    /// The memfd behind a fresh region (nil for a mapping of a snapshot file).
    let backing: Int32?

    public var end: UInt64 { start.value + size }

    /// The host virtual address KVM needs for KVM_SET_USER_MEMORY_REGION.
    public var hostAddress: UInt { UInt(bitPattern: base) }

    init(start: GuestAddress, size: UInt64) throws {
        try GuestMemoryRegion.checkSize(start: start, size: size)
        let descriptor = clinux_memfd("kasa-guest-ram")
        guard descriptor >= 0 else { throw GuestMemoryError.mappingFailed(size: size, errno: errno) }
        guard ftruncate(descriptor, off_t(size)) == 0 else {
            let code = errno
            close(descriptor)
            throw GuestMemoryError.mappingFailed(size: size, errno: code)
        }
        // MAP_NORESERVE: guest RAM is committed lazily, page by page, as the guest touches it.
        let mapping = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, descriptor, 0)
        guard let mapping, mapping != MAP_FAILED else {
            let code = errno
            close(descriptor)
            throw GuestMemoryError.mappingFailed(size: size, errno: code)
        }
        GuestMemoryRegion.keepOutOfCoreDumps(mapping, size: size)
        self.start = start
        self.size = size
        self.base = mapping
        self.backing = descriptor
    }

    /// Maps `size` bytes of `file` at `offset` privately: reads come from the file (shared
    /// with every other mapping of it), writes go to pages of this process only.
    init(start: GuestAddress, size: UInt64, file: Int32, offset: UInt64) throws {
        try GuestMemoryRegion.checkSize(start: start, size: size)
        let mapping = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file, off_t(offset))
        guard let mapping, mapping != MAP_FAILED else {
            throw GuestMemoryError.mappingFailed(size: size, errno: errno)
        }
        GuestMemoryRegion.keepOutOfCoreDumps(mapping, size: size)
        self.start = start
        self.size = size
        self.base = mapping
        self.backing = nil
    }

    /// The guest's memory is the workload's data: a crashing VMM's core dump keeps its own
    /// state for debugging but not the guest's pages (MADV_DONTDUMP; best effort).
    private static func keepOutOfCoreDumps(_ mapping: UnsafeMutableRawPointer, size: UInt64) {
        _ = madvise(mapping, Int(size), CLINUX_MADV_DONTDUMP)
    }

    private static func checkSize(start: GuestAddress, size: UInt64) throws {
        guard size > 0, size % 4096 == 0 else {
            throw GuestMemoryError.invalidLayout("region at \(start) has size \(size), not a positive multiple of 4 KiB")
        }
    }

    deinit {
        munmap(base, Int(size))
        if let backing { close(backing) }
    }

    /// Host pointer for [address, address + length), or nil when any part falls outside.
    func pointer(at address: GuestAddress, length: UInt64) -> UnsafeMutableRawPointer? {
        guard address.value >= start.value else { return nil }
        let offset = address.value - start.value
        guard offset <= size, length <= size - offset else { return nil }
        // Safe: offset + length <= size was checked just above.
        return base.advanced(by: Int(offset))
    }

    /// The byte ranges of the region that may hold data: for a memfd, the extents the
    /// kernel allocated (SEEK_DATA/SEEK_HOLE: pages never written are holes, swapped-out
    /// pages are data); for a file mapping, all of it.
    func possiblyWrittenRanges() -> [Range<UInt64>] {
        guard let backing else { return [0..<size] }
        var ranges: [Range<UInt64>] = []
        var position: off_t = 0
        while UInt64(position) < size {
            let data = lseek(backing, position, CLINUX_SEEK_DATA)
            if data < 0 {
                // ENXIO: no data after `position`. Anything else: the kernel cannot tell, so all of it.
                if errno == ENXIO { break }
                return [0..<size]
            }
            var hole = lseek(backing, data, CLINUX_SEEK_HOLE)
            if hole < 0 { hole = off_t(size) }
            ranges.append(UInt64(data)..<min(UInt64(hole), size))
            position = hole
        }
        return ranges
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// One contiguous stretch of guest RAM backed by an anonymous shared mapping in this process.
public final class GuestMemoryRegion: @unchecked Sendable {
    public let start: GuestAddress
    public let size: UInt64
    // Shared with the vCPUs through KVM; concurrent guest access is the guest's business,
    // exactly as on real hardware. The VMM only copies bytes in and out, bounds-checked.
    let base: UnsafeMutableRawPointer

    public var end: UInt64 { start.value + size }

    /// The host virtual address KVM needs for KVM_SET_USER_MEMORY_REGION.
    public var hostAddress: UInt { UInt(bitPattern: base) }

    init(start: GuestAddress, size: UInt64) throws {
        guard size > 0, size % 4096 == 0 else {
            throw GuestMemoryError.invalidLayout("region at \(start) has size \(size), not a positive multiple of 4 KiB")
        }
        // MAP_NORESERVE: guest RAM is committed lazily, page by page, as the guest touches it.
        let mapping = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapping, mapping != MAP_FAILED else {
            throw GuestMemoryError.mappingFailed(size: size, errno: errno)
        }
        self.start = start
        self.size = size
        self.base = mapping
    }

    deinit { munmap(base, Int(size)) }

    /// Host pointer for [address, address + length), or nil when any part falls outside.
    func pointer(at address: GuestAddress, length: UInt64) -> UnsafeMutableRawPointer? {
        guard address.value >= start.value else { return nil }
        let offset = address.value - start.value
        guard offset <= size, length <= size - offset else { return nil }
        // Safe: offset + length <= size was checked just above.
        return base.advanced(by: Int(offset))
    }
}

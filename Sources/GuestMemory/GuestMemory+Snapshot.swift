#if canImport(Glibc)
import Glibc
#endif

extension GuestMemory {
    /// Guest RAM mapped privately from `file`: the regions one after another from `offset`
    /// (the layout `writeSnapshot` produces). The file must be at least that long.
    public convenience init(ranges: [(start: GuestAddress, size: UInt64)], restoringFrom file: Int32, offset: UInt64) throws {
        var position = offset
        var regions: [GuestMemoryRegion] = []
        for range in ranges {
            regions.append(try GuestMemoryRegion(start: range.start, size: range.size, file: file, offset: position))
            position += range.size
        }
        try self.init(checkedRegions: regions, ranges: ranges)
    }

    public static let pageSize: UInt64 = 4096

    /// Writes all of guest RAM to `file` from `offset`, regions one after another, as a
    /// sparse file: pages never written and pages that are all zeros are left as holes
    /// (the file is first extended to its full length). Returns the bytes written. The
    /// guest and every device must be paused.
    @discardableResult
    public func writeSnapshot(to file: Int32, offset: UInt64) throws -> UInt64 {
        guard ftruncate(file, off_t(offset + totalSize)) == 0 else { throw GuestMemoryError.snapshotWriteFailed(errno: errno) }
        var written: UInt64 = 0
        var regionOffset = offset
        for region in regions {
            for range in region.possiblyWrittenRanges() {
                var page = range.lowerBound
                while page < range.upperBound {
                    // Skip zero pages, then write the run of non-zero pages that follows in one call.
                    if region.isZeroPage(at: page, limit: range.upperBound) {
                        page += GuestMemory.pageSize
                        continue
                    }
                    var end = page + GuestMemory.pageSize
                    while end < range.upperBound, !region.isZeroPage(at: end, limit: range.upperBound), end - page < (8 << 20) {
                        end += GuestMemory.pageSize
                    }
                    end = min(end, range.upperBound)
                    try region.write(from: page, count: end - page, to: file, at: regionOffset + page)
                    written += end - page
                    page = end
                }
            }
            regionOffset += region.size
        }
        return written
    }
}

extension GuestMemoryRegion {
    func isZeroPage(at offset: UInt64, limit: UInt64) -> Bool {
        let count = Int(min(GuestMemory.pageSize, limit - offset))
        // Safe: offset < limit <= size, so [offset, offset + count) lies inside the mapping.
        let words = UnsafeRawBufferPointer(start: base.advanced(by: Int(offset)), count: count)
        var index = 0
        while index + 8 <= count {
            if words.loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
            index += 8
        }
        while index < count {
            if words[index] != 0 { return false }
            index += 1
        }
        return true
    }

    func write(from offset: UInt64, count: UInt64, to file: Int32, at fileOffset: UInt64) throws {
        var done: UInt64 = 0
        while done < count {
            // Safe: callers keep offset + count within the region's size.
            let result = pwrite(file, base.advanced(by: Int(offset + done)), Int(count - done), off_t(fileOffset + done))
            if result < 0 {
                if errno == EINTR { continue }
                throw GuestMemoryError.snapshotWriteFailed(errno: errno)
            }
            done += UInt64(result)
        }
    }
}

/// Identity page tables for the 64-bit entry: one PML4, one PDPT and one page directory of
/// 2 MiB pages per GiB mapped. Linux replaces them as soon as it runs.
public enum PageTables {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let largePage: UInt64 = 1 << 7

    /// (address, bytes) pairs to copy into guest memory.
    public static func identityMap(gibibytes: Int = BootLayout.identityMappedGiB) -> [(GuestAddress64, [UInt8])] {
        var pml4 = ByteWriter(size: 4096)
        pml4.put(BootLayout.pdpt.value | present | writable, at: 0)
        var pdpt = ByteWriter(size: 4096)
        var tables: [(GuestAddress64, [UInt8])] = []
        for gib in 0..<gibibytes {
            let directoryAddress = BootLayout.pageDirectories.value + UInt64(gib) * 4096
            pdpt.put(directoryAddress | present | writable, at: gib * 8)
            var directory = ByteWriter(size: 4096)
            for entry in 0..<512 {
                let physical = (UInt64(gib) << 30) + (UInt64(entry) << 21)
                directory.put(physical | present | writable | largePage, at: entry * 8)
            }
            tables.append((directoryAddress, directory.bytes))
        }
        return [(BootLayout.pml4.value, pml4.bytes), (BootLayout.pdpt.value, pdpt.bytes)] + tables
    }
}

import GuestMemory

/// Translates a guest linear address through the guest's own 4-level page tables, for when
/// the VMM must read the instruction a vCPU stopped on and KVM_TRANSLATE is unavailable.
enum GuestPageWalk {
    static let present: UInt64 = 1
    static let largePage: UInt64 = 1 << 7
    static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000

    static func translate(linear: UInt64, cr3: UInt64, memory: GuestMemory) -> UInt64? {
        var table = cr3 & addressMask
        // PML4 (bits 47:39), PDPT (38:30), PD (29:21), PT (20:12)
        for (level, shift) in [39, 30, 21, 12].enumerated() {
            let index = (linear >> UInt64(shift)) & 0x1FF
            guard let entry = try? memory.read(UInt64.self, at: GuestAddress(table + index * 8)), entry & present != 0 else {
                return nil
            }
            let isLeaf = shift == 12 || (level > 0 && entry & largePage != 0)
            if isLeaf {
                let pageMask = (UInt64(1) << UInt64(shift)) - 1
                return (entry & addressMask & ~pageMask) | (linear & pageMask)
            }
            table = entry & addressMask
        }
        return nil
    }
}

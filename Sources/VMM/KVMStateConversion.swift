import Boot
import CKVM

/// Translation from the boot code's neutral register state to KVM's structures.
extension kvm_segment {
    init(_ segment: Segment) {
        self.init()
        base = segment.base
        limit = segment.limit
        selector = segment.selector
        type = segment.type
        present = segment.present ? 1 : 0
        dpl = segment.privilegeLevel
        db = segment.defaultSize32 ? 1 : 0
        s = segment.isCodeOrData ? 1 : 0
        l = segment.longMode ? 1 : 0
        g = segment.granularity4K ? 1 : 0
        avl = 0
        unusable = 0
    }
}

extension kvm_cpuid_entry2 {
    init(_ entry: CPUIDEntry) {
        self.init()
        function = entry.function
        index = entry.index
        flags = entry.flags
        eax = entry.eax
        ebx = entry.ebx
        ecx = entry.ecx
        edx = entry.edx
    }

    var neutral: CPUIDEntry {
        CPUIDEntry(function: function, index: index, flags: flags, eax: eax, ebx: ebx, ecx: ecx, edx: edx)
    }
}

enum ModelSpecificRegister {
    static let sysenterCS: UInt32 = 0x174, sysenterESP: UInt32 = 0x175, sysenterEIP: UInt32 = 0x176
    static let star: UInt32 = 0xC000_0081, longStar: UInt32 = 0xC000_0082, compatStar: UInt32 = 0xC000_0083
    static let syscallMask: UInt32 = 0xC000_0084, kernelGSBase: UInt32 = 0xC000_0102
    static let timeStampCounter: UInt32 = 0x10
    static let miscEnable: UInt32 = 0x1A0
    static let mtrrDefaultType: UInt32 = 0x2FF

    /// A clean architectural start: syscall MSRs zeroed, fast strings on, MTRRs enabled with
    /// write-back as the default memory type.
    static let bootValues: [(index: UInt32, value: UInt64)] = [
        (sysenterCS, 0), (sysenterESP, 0), (sysenterEIP, 0),
        (star, 0), (longStar, 0), (compatStar, 0), (syscallMask, 0), (kernelGSBase, 0),
        (timeStampCounter, 0),
        (miscEnable, 1),
        (mtrrDefaultType, (1 << 11) | 6),
    ]
}

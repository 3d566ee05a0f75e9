/// A flat segment as both the GDT (packed 8-byte form) and KVM's kvm_segment (unpacked) see it.
public struct Segment: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    public var type: UInt8
    public var present: Bool
    public var privilegeLevel: UInt8
    public var defaultSize32: Bool
    public var isCodeOrData: Bool
    public var longMode: Bool
    public var granularity4K: Bool

    /// Decodes a GDT descriptor into the form KVM wants, the limit scaled by granularity.
    public init(descriptor: UInt64, selector: UInt16) {
        let rawLimit = UInt32(descriptor & 0xffff) | UInt32((descriptor >> 32) & 0xf_0000)
        granularity4K = (descriptor >> 55) & 1 == 1
        limit = granularity4K ? (rawLimit << 12) | 0xfff : rawLimit
        base = ((descriptor >> 16) & 0xff_ffff) | ((descriptor >> 32) & 0xff00_0000)
        self.selector = selector
        type = UInt8((descriptor >> 40) & 0xf)
        isCodeOrData = (descriptor >> 44) & 1 == 1
        privilegeLevel = UInt8((descriptor >> 45) & 3)
        present = (descriptor >> 47) & 1 == 1
        longMode = (descriptor >> 53) & 1 == 1
        defaultSize32 = (descriptor >> 54) & 1 == 1
    }
}

/// The boot GDT: null, code, data, TSS, in the selectors the initial state uses.
public enum BootGDT {
    public static let codeSelector: UInt16 = 0x08
    public static let dataSelector: UInt16 = 0x10
    public static let taskSelector: UInt16 = 0x18

    /// 64-bit code (L=1), read/execute, present.
    public static let code64: UInt64 = 0x00AF_9B00_0000_FFFF
    /// 32-bit flat code for the PVH entry, which starts in protected mode without paging.
    public static let code32: UInt64 = 0x00CF_9B00_0000_FFFF
    /// Flat read/write data, 4 GiB.
    public static let data: UInt64 = 0x00CF_9300_0000_FFFF
    /// A busy 64-bit TSS descriptor; KVM needs a valid TR even though the guest replaces it.
    public static let task: UInt64 = 0x008F_8B00_0000_FFFF

    public static func entries(sixtyFourBit: Bool) -> [UInt64] {
        [0, sixtyFourBit ? code64 : code32, data, task]
    }

    public static func bytes(sixtyFourBit: Bool) -> [UInt8] {
        var writer = ByteWriter(size: 8 * 4)
        for (index, entry) in entries(sixtyFourBit: sixtyFourBit).enumerated() {
            writer.put(entry, at: index * 8)
        }
        return writer.bytes
    }
}

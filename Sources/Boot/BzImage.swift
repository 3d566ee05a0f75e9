/// A bzImage: the real-mode setup sectors followed by the protected-mode kernel, described
/// by the setup header at offset 0x1f1 (Documentation/arch/x86/boot.rst).
public struct BzImage: Sendable {
    public static let setupHeaderOffset = 0x1f1
    public static let bootFlagOffset = 0x1fe
    public static let headerMagicOffset = 0x202
    public static let versionOffset = 0x206
    public static let xloadflagsOffset = 0x236
    public static let commandLineSizeOffset = 0x238
    public static let initrdAddressMaxOffset = 0x22c
    public static let initSizeOffset = 0x260
    public static let headerMagic: UInt32 = 0x5372_6448  // "HdrS"
    public static let bootFlag: UInt16 = 0xAA55
    /// 2.12 introduced xloadflags, which says whether the 64-bit entry exists.
    public static let minimumVersion: UInt16 = 0x020C
    public static let kernel64EntryFlag: UInt16 = 1 << 0
    public static let sixtyFourBitEntryOffset: UInt64 = 0x200

    public let version: UInt16
    /// The setup header bytes, from 0x1f1 to the end the header itself declares; copied
    /// verbatim into boot_params.
    public let setupHeader: [UInt8]
    public let protectedModeKernel: ArraySlice<UInt8>
    public let commandLineLimit: Int
    public let initrdAddressMax: UInt64
    /// Memory the kernel needs from its load address while it decompresses and runs.
    public let initSize: UInt64

    public static func looksLikeBzImage(_ bytes: [UInt8]) -> Bool {
        let reader = ByteReader(bytes)
        return (try? reader.get(UInt32.self, at: headerMagicOffset, what: "")) == headerMagic
    }

    public init(bytes: [UInt8]) throws {
        let reader = ByteReader(bytes)
        guard bytes.count >= 0x264 else { throw BootError.truncated(what: "the bzImage setup header") }
        guard try reader.get(UInt16.self, at: BzImage.bootFlagOffset, what: "boot_flag") == BzImage.bootFlag else {
            throw BootError.invalidBzImage("boot_flag is not 0xAA55")
        }
        guard try reader.get(UInt32.self, at: BzImage.headerMagicOffset, what: "header") == BzImage.headerMagic else {
            throw BootError.invalidBzImage("no 'HdrS' signature")
        }
        version = try reader.get(UInt16.self, at: BzImage.versionOffset, what: "version")
        guard version >= BzImage.minimumVersion else {
            throw BootError.invalidBzImage("boot protocol \(version >> 8).\(version & 0xff) is older than 2.12")
        }
        let xloadflags = try reader.get(UInt16.self, at: BzImage.xloadflagsOffset, what: "xloadflags")
        guard xloadflags & BzImage.kernel64EntryFlag != 0 else {
            throw BootError.invalidBzImage("the kernel has no 64-bit entry point (not an x86-64 kernel)")
        }
        var setupSectors = Int(bytes[BzImage.setupHeaderOffset])
        if setupSectors == 0 { setupSectors = 4 }
        let kernelOffset = UInt64(setupSectors + 1) * 512
        guard kernelOffset < UInt64(bytes.count) else {
            throw BootError.truncated(what: "the protected-mode kernel after \(setupSectors) setup sectors")
        }
        protectedModeKernel = try reader.slice(at: kernelOffset, count: UInt64(bytes.count) - kernelOffset, what: "kernel")
        let headerEnd = 0x202 + Int(bytes[0x201])
        guard headerEnd <= bytes.count, headerEnd > BzImage.setupHeaderOffset else {
            throw BootError.truncated(what: "the setup header")
        }
        setupHeader = Array(bytes[BzImage.setupHeaderOffset..<headerEnd])
        let declaredLimit = Int(try reader.get(UInt32.self, at: BzImage.commandLineSizeOffset, what: "cmdline_size"))
        commandLineLimit = declaredLimit > 0 ? min(declaredLimit, BootLayout.commandLineHardLimit) : BootLayout.commandLineDefaultLimit
        initrdAddressMax = UInt64(try reader.get(UInt32.self, at: BzImage.initrdAddressMaxOffset, what: "initrd_addr_max"))
        initSize = UInt64(try reader.get(UInt32.self, at: BzImage.initSizeOffset, what: "init_size"))
    }
}

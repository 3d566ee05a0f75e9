/// Linux's boot_params ("zero page") for the 64-bit boot protocol: setup header, command
/// line and initrd pointers, and the e820 table.
public enum ZeroPage {
    public static let size = 4096
    static let ext_ramdisk_image = 0x0c0
    static let ext_ramdisk_size = 0x0c4
    static let ext_cmd_line_ptr = 0x0c8
    static let e820Count = 0x1e8
    static let bootFlag = 0x1fe
    static let headerMagic = 0x202
    static let version = 0x206
    static let typeOfLoader = 0x210
    static let loadFlags = 0x211
    static let ramdiskImage = 0x218
    static let ramdiskSize = 0x21c
    static let heapEndPointer = 0x224
    static let commandLinePointer = 0x228
    static let kernelAlignment = 0x230
    static let commandLineSize = 0x238
    static let e820Table = 0x2d0
    static let e820Capacity = 128
    static let undefinedLoader: UInt8 = 0xff
    static let canUseHeap: UInt8 = 0x80

    public struct Parameters: Sendable {
        public var setupHeader: [UInt8]?
        public var commandLine: GuestAddress64
        public var commandLineSize: Int
        public var initrd: (address: UInt64, size: UInt64)?
        public var e820: [E820Entry]

        public init(setupHeader: [UInt8]?, commandLine: GuestAddress64, commandLineSize: Int, initrd: (address: UInt64, size: UInt64)?, e820: [E820Entry]) {
            self.setupHeader = setupHeader
            self.commandLine = commandLine
            self.commandLineSize = commandLineSize
            self.initrd = initrd
            self.e820 = e820
        }
    }

    public static func build(_ parameters: Parameters) throws -> [UInt8] {
        guard parameters.e820.count <= e820Capacity else {
            throw BootError.memoryMapTooLarge(entries: parameters.e820.count)
        }
        var page = ByteWriter(size: size)
        if let header = parameters.setupHeader {
            // A bzImage's own header comes first; the loader then fills in its fields.
            page.put(header, at: BzImage.setupHeaderOffset)
        } else {
            // An ELF vmlinux has no setup header: write the fields Linux checks.
            page.put(BzImage.bootFlag, at: bootFlag)
            page.put(BzImage.headerMagic, at: headerMagic)
            page.put(UInt16(0x020F), at: version)
            page.put(UInt32(0x0100_0000), at: kernelAlignment)
        }
        page.put(undefinedLoader, at: typeOfLoader)
        let flags = (parameters.setupHeader.map { $0[loadFlags - BzImage.setupHeaderOffset] } ?? 0) | canUseHeap
        page.put(flags, at: loadFlags)
        page.put(UInt16(0xfe00), at: heapEndPointer)
        page.put(UInt32(truncatingIfNeeded: parameters.commandLine), at: commandLinePointer)
        page.put(UInt32(truncatingIfNeeded: parameters.commandLine >> 32), at: ext_cmd_line_ptr)
        page.put(UInt32(parameters.commandLineSize), at: commandLineSize)
        if let initrd = parameters.initrd {
            page.put(UInt32(truncatingIfNeeded: initrd.address), at: ramdiskImage)
            page.put(UInt32(truncatingIfNeeded: initrd.address >> 32), at: ext_ramdisk_image)
            page.put(UInt32(truncatingIfNeeded: initrd.size), at: ramdiskSize)
            page.put(UInt32(truncatingIfNeeded: initrd.size >> 32), at: ext_ramdisk_size)
        }
        page.put(UInt8(parameters.e820.count), at: e820Count)
        for (index, entry) in parameters.e820.enumerated() {
            let base = e820Table + index * 20
            page.put(entry.address, at: base)
            page.put(entry.size, at: base + 8)
            page.put(entry.kind.rawValue, at: base + 16)
        }
        return page.bytes
    }
}

/// A guest-physical address as a bare integer, for structure fields.
public typealias GuestAddress64 = UInt64

/// The PVH boot ABI's hvm_start_info (version 1, with a memory map), module list and
/// memory map, as the 32-bit PVH entry finds them through %ebx.
public enum PVHStartInfo {
    public static let magic: UInt32 = 0x336E_C578
    public static let startInfoSize = 56
    public static let moduleEntrySize = 32
    public static let memoryMapEntrySize = 24

    public struct Built: Sendable {
        public let startInfo: [UInt8]
        public let moduleList: [UInt8]
        public let memoryMap: [UInt8]
    }

    public static func build(commandLine: UInt64, initrd: (address: UInt64, size: UInt64)?, e820: [E820Entry]) throws -> Built {
        guard e820.count <= BootLayout.pvhMemoryMapCapacity else {
            throw BootError.memoryMapTooLarge(entries: e820.count)
        }
        var info = ByteWriter(size: startInfoSize)
        info.put(magic, at: 0)
        info.put(UInt32(1), at: 4)  // version 1: the memory map fields are valid
        info.put(UInt32(0), at: 8)  // flags
        info.put(UInt32(initrd == nil ? 0 : 1), at: 12)
        info.put(initrd == nil ? UInt64(0) : BootLayout.pvhModuleList.value, at: 16)
        info.put(commandLine, at: 24)
        info.put(UInt64(0), at: 32)  // no ACPI RSDP: devices come from the MP table and command line
        info.put(BootLayout.pvhMemoryMap.value, at: 40)
        info.put(UInt32(e820.count), at: 48)

        var modules = ByteWriter(size: initrd == nil ? 0 : moduleEntrySize)
        if let initrd {
            modules.put(initrd.address, at: 0)
            modules.put(initrd.size, at: 8)
        }

        var map = ByteWriter(size: e820.count * memoryMapEntrySize)
        for (index, entry) in e820.enumerated() {
            let base = index * memoryMapEntrySize
            map.put(entry.address, at: base)
            map.put(entry.size, at: base + 8)
            map.put(entry.kind.rawValue, at: base + 16)
        }
        return Built(startInfo: info.bytes, moduleList: modules.bytes, memoryMap: map.bytes)
    }
}

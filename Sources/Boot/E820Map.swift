/// The guest's physical memory map, as both Linux boot paths (zero page and PVH) carry it.
public struct E820Entry: Sendable, Equatable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
    }

    public let address: UInt64
    public let size: UInt64
    public let kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }
}

public enum E820Map {
    /// RAM below the EBDA, the EBDA (holding the MP table) as reserved, then RAM from 1 MiB
    /// to the MMIO hole and from 4 GiB on for large VMs. The legacy 640 KiB-1 MiB window
    /// is left out, as on a PC.
    public static func entries(memorySize: UInt64) -> [E820Entry] {
        var entries = [
            E820Entry(address: 0, size: BootLayout.ebdaStart, kind: .ram),
            E820Entry(address: BootLayout.ebdaStart, size: 0xA0000 - BootLayout.ebdaStart, kind: .reserved),
        ]
        let lowEnd = min(memorySize, BootLayout.mmioHoleStart)
        if lowEnd > BootLayout.highMemoryStart {
            entries.append(E820Entry(address: BootLayout.highMemoryStart, size: lowEnd - BootLayout.highMemoryStart, kind: .ram))
        }
        if memorySize > BootLayout.mmioHoleStart {
            entries.append(E820Entry(address: BootLayout.mmioHoleEnd, size: memorySize - BootLayout.mmioHoleStart, kind: .ram))
        }
        return entries
    }
}

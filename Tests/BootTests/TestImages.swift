@testable import Boot

/// Builds small ELF and bzImage files in memory, so the parsers can be tested on exact,
/// deliberately broken headers.
enum TestImages {
    struct Segment {
        var physicalAddress: UInt64
        var contents: [UInt8]
        var memorySize: UInt64
    }

    /// An ELF64 x86-64 executable with the given load segments and, optionally, a PVH note.
    static func elf(entry: UInt64 = 0x100000, segments: [Segment], pvhEntry: UInt32? = nil) -> [UInt8] {
        let headerCount = segments.count + (pvhEntry == nil ? 0 : 1)
        let programHeaders = 64
        var offset = programHeaders + 56 * headerCount
        var dataBlobs: [(Int, [UInt8])] = []
        var headers: [(type: UInt32, offset: Int, address: UInt64, fileSize: Int, memorySize: UInt64)] = []
        for segment in segments {
            headers.append((1, offset, segment.physicalAddress, segment.contents.count, segment.memorySize))
            dataBlobs.append((offset, segment.contents))
            offset += segment.contents.count
        }
        if let pvhEntry {
            var note = ByteWriter(size: 20)
            note.put(UInt32(4), at: 0)
            note.put(UInt32(4), at: 4)
            note.put(UInt32(18), at: 8)
            note.put(ascii: "Xen", at: 12)
            note.put(pvhEntry, at: 16)
            headers.append((4, offset, 0, 20, 20))
            dataBlobs.append((offset, note.bytes))
            offset += 20
        }
        var file = ByteWriter(size: offset)
        file.put([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], at: 0)
        file.put(UInt16(2), at: 16)  // ET_EXEC
        file.put(UInt16(62), at: 18)  // x86-64
        file.put(UInt32(1), at: 20)
        file.put(entry, at: 24)
        file.put(UInt64(programHeaders), at: 32)
        file.put(UInt16(64), at: 52)
        file.put(UInt16(56), at: 54)
        file.put(UInt16(headerCount), at: 56)
        for (index, header) in headers.enumerated() {
            let base = programHeaders + index * 56
            file.put(header.type, at: base)
            file.put(UInt64(header.offset), at: base + 8)
            file.put(header.address, at: base + 16)
            file.put(header.address, at: base + 24)
            file.put(UInt64(header.fileSize), at: base + 32)
            file.put(header.memorySize, at: base + 40)
        }
        for (start, blob) in dataBlobs { file.put(blob, at: start) }
        return file.bytes
    }

    static func simpleELF(pvh: Bool = true) -> [UInt8] {
        elf(segments: [Segment(physicalAddress: 0x100000, contents: [0xF4, 0xEB, 0xFD], memorySize: 0x2000)],
            pvhEntry: pvh ? 0x100000 : nil)
    }

    /// A bzImage with one setup sector and `kernel` as its protected-mode part.
    static func bzImage(kernel: [UInt8] = [UInt8](repeating: 0x90, count: 0x400), version: UInt16 = 0x020F,
                        xloadflags: UInt16 = 1, setupSectors: UInt8 = 1, initSize: UInt32 = 0x10000) -> [UInt8] {
        var image = ByteWriter(size: 512 * (Int(setupSectors) + 1))
        image.put(setupSectors, at: 0x1f1)
        image.put(UInt16(0xAA55), at: 0x1fe)
        image.put(UInt8(0x66), at: 0x201)  // jump offset: header ends at 0x268
        image.put(UInt32(0x5372_6448), at: 0x202)
        image.put(version, at: 0x206)
        image.put(UInt8(0x01), at: 0x211)  // loadflags: LOADED_HIGH
        image.put(UInt32(0x7fff_ffff), at: 0x22c)
        image.put(xloadflags, at: 0x236)
        image.put(UInt32(2048), at: 0x238)
        image.put(initSize, at: 0x260)
        return image.bytes + kernel
    }
}

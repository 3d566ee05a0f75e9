/// An x86-64 ELF kernel (vmlinux or a test guest) parsed from its bytes.
///
/// Only what booting needs is read: the loadable segments at their physical addresses,
/// the 64-bit entry, and the PVH entry from a Xen ELF note when present. Every offset and
/// size from the file is checked before use, so a malicious header produces an error.
public struct ELFKernel: Sendable {
    public struct Segment: Sendable, Equatable {
        public let physicalAddress: UInt64
        public let fileOffset: UInt64
        public let fileSize: UInt64
        public let memorySize: UInt64
    }

    public let entry: UInt64
    /// The 32-bit PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), if the kernel has one.
    public let pvhEntry: UInt64?
    public let segments: [Segment]

    static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]
    static let classELF64: UInt8 = 2
    static let dataLittleEndian: UInt8 = 1
    static let machineX86_64: UInt16 = 62
    static let typeExecutable: UInt16 = 2
    static let typeShared: UInt16 = 3
    static let programLoad: UInt32 = 1
    static let programNote: UInt32 = 4
    static let xenNoteName = "Xen"
    static let xenPhys32EntryNote: UInt32 = 18
    static let maximumProgramHeaders = 256

    public static func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && Array(bytes[0..<4]) == magic
    }

    public init(bytes: [UInt8]) throws {
        let file = ByteReader(bytes)
        guard ELFKernel.isELF(bytes) else { throw BootError.invalidELF("no ELF magic") }
        guard bytes.count >= 64 else { throw BootError.truncated(what: "the ELF header") }
        guard bytes[4] == ELFKernel.classELF64 else {
            throw BootError.invalidELF("not a 64-bit ELF (class \(bytes[4])); build the kernel for x86_64")
        }
        guard bytes[5] == ELFKernel.dataLittleEndian else { throw BootError.invalidELF("not little-endian") }
        let type = try file.get(UInt16.self, at: 16, what: "e_type")
        guard type == ELFKernel.typeExecutable || type == ELFKernel.typeShared else {
            throw BootError.invalidELF("not an executable (e_type \(type))")
        }
        let machine = try file.get(UInt16.self, at: 18, what: "e_machine")
        guard machine == ELFKernel.machineX86_64 else {
            throw BootError.invalidELF("built for machine \(machine), not x86-64 (62)")
        }
        entry = try file.get(UInt64.self, at: 24, what: "e_entry")
        let headerTable = try file.get(UInt64.self, at: 32, what: "e_phoff")
        let headerSize = try file.get(UInt16.self, at: 54, what: "e_phentsize")
        let headerCount = try file.get(UInt16.self, at: 56, what: "e_phnum")
        guard headerCount > 0 else { throw BootError.invalidELF("no program headers") }
        guard headerCount <= ELFKernel.maximumProgramHeaders else {
            throw BootError.invalidELF("\(headerCount) program headers is implausible")
        }
        guard headerSize >= 56 else { throw BootError.invalidELF("program header size \(headerSize) is too small") }
        _ = try file.slice(at: headerTable, count: UInt64(headerSize) * UInt64(headerCount), what: "the program header table")

        var segments: [Segment] = []
        var pvhEntry: UInt64?
        for index in 0..<Int(headerCount) {
            let base = Int(headerTable) + index * Int(headerSize)
            let kind = try file.get(UInt32.self, at: base, what: "p_type")
            let offset = try file.get(UInt64.self, at: base + 8, what: "p_offset")
            let physical = try file.get(UInt64.self, at: base + 24, what: "p_paddr")
            let fileSize = try file.get(UInt64.self, at: base + 32, what: "p_filesz")
            let memorySize = try file.get(UInt64.self, at: base + 40, what: "p_memsz")
            switch kind {
            case ELFKernel.programLoad:
                _ = try file.slice(at: offset, count: fileSize, what: "segment \(index)")
                guard fileSize <= memorySize else {
                    throw BootError.invalidELF("segment \(index) has more file bytes than memory bytes")
                }
                guard physical.addingReportingOverflow(memorySize).overflow == false else {
                    throw BootError.invalidELF("segment \(index) wraps past the end of the address space")
                }
                segments.append(Segment(physicalAddress: physical, fileOffset: offset, fileSize: fileSize, memorySize: memorySize))
            case ELFKernel.programNote:
                let notes = try file.slice(at: offset, count: fileSize, what: "note segment \(index)")
                if let found = try ELFKernel.pvhEntry(inNotes: Array(notes)) { pvhEntry = found }
            default:
                continue
            }
        }
        guard !segments.isEmpty else { throw BootError.invalidELF("no loadable segments") }
        self.segments = segments
        self.pvhEntry = pvhEntry
    }

    /// Walks an ELF note area for Xen's PHYS32_ENTRY note (namesz, descsz, type, name, desc;
    /// name and desc each padded to 4 bytes).
    static func pvhEntry(inNotes notes: [UInt8]) throws -> UInt64? {
        let reader = ByteReader(notes)
        var offset = 0
        while offset + 12 <= notes.count {
            let nameSize = Int(try reader.get(UInt32.self, at: offset, what: "note name size"))
            let descriptionSize = Int(try reader.get(UInt32.self, at: offset + 4, what: "note size"))
            let type = try reader.get(UInt32.self, at: offset + 8, what: "note type")
            let nameStart = offset + 12
            let descriptionStart = nameStart + ((nameSize + 3) & ~3)
            let next = descriptionStart + ((descriptionSize + 3) & ~3)
            guard nameSize <= notes.count, descriptionSize <= notes.count, next <= notes.count, next > offset else {
                throw BootError.invalidELF("a note runs past its segment")
            }
            let name = notes[nameStart..<(nameStart + nameSize)].prefix { $0 != 0 }
            if type == xenPhys32EntryNote, String(decoding: name, as: UTF8.self) == xenNoteName {
                switch descriptionSize {
                case 4: return UInt64(try reader.get(UInt32.self, at: descriptionStart, what: "PVH entry"))
                case 8: return try reader.get(UInt64.self, at: descriptionStart, what: "PVH entry")
                default: throw BootError.invalidELF("PVH entry note has \(descriptionSize) bytes, expected 4 or 8")
                }
            }
            offset = next
        }
        return nil
    }

    /// The lowest and highest guest-physical addresses the segments occupy.
    public var physicalExtent: (start: UInt64, end: UInt64) {
        let start = segments.map(\.physicalAddress).min() ?? 0
        let end = segments.map { $0.physicalAddress + $0.memorySize }.max() ?? 0
        return (start, end)
    }
}

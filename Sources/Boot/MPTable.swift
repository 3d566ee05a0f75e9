import MachineSize
import GuestMemory

/// An Intel MultiProcessor Specification 1.4 table: how a kernel without ACPI learns the
/// vCPUs, the IOAPIC and how the ISA interrupts are wired.
public enum MPTable {
    public static let ioapicPins = 24
    static let floatingPointerSize = 16
    static let headerSize = 44
    static let processorEntrySize = 20
    static let shortEntrySize = 8
    static let lapicVersion: UInt8 = 0x14
    static let ioapicVersion: UInt8 = 0x11
    static let interruptTypeVectored: UInt8 = 0
    static let interruptTypeNMI: UInt8 = 1
    static let interruptTypeExtINT: UInt8 = 3

    /// Fits in the last KiB of base memory, where the kernel searches.
    public static let maximumVCPUs = MachineSize.vcpuCounts.upperBound

    public static func size(vcpus: Int) -> Int {
        floatingPointerSize + headerSize + vcpus * processorEntrySize + shortEntrySize * (2 + ioapicPins + 2)
    }

    /// The floating pointer followed by the configuration table, for placement at `address`.
    public static func build(vcpus: Int, at address: UInt64 = BootLayout.mpTable.value) throws -> [UInt8] {
        guard vcpus >= 1, vcpus <= maximumVCPUs else {
            throw BootError.tooManyVCPUs(requested: vcpus, limit: maximumVCPUs)
        }
        let ioapicID = UInt8(vcpus)
        var table = ByteWriter(size: size(vcpus: vcpus))
        let configurationStart = floatingPointerSize
        var offset = configurationStart + headerSize
        var entryCount: UInt16 = 0

        for vcpu in 0..<vcpus {
            table.put(UInt8(0), at: offset)  // processor entry
            table.put(UInt8(vcpu), at: offset + 1)  // local APIC id
            table.put(lapicVersion, at: offset + 2)
            table.put(UInt8(vcpu == 0 ? 0b11 : 0b01), at: offset + 3)  // enabled, bootstrap processor
            table.put(UInt32(0x600), at: offset + 4)  // family 6 signature
            table.put(UInt32(0x201), at: offset + 8)  // FPU and APIC present
            offset += processorEntrySize
            entryCount += 1
        }
        table.put(UInt8(1), at: offset)  // bus entry
        table.put(UInt8(0), at: offset + 1)
        table.put(ascii: "ISA   ", at: offset + 2)
        offset += shortEntrySize
        table.put(UInt8(2), at: offset)  // IOAPIC entry
        table.put(ioapicID, at: offset + 1)
        table.put(ioapicVersion, at: offset + 2)
        table.put(UInt8(1), at: offset + 3)  // enabled
        table.put(BootLayout.ioapicAddress, at: offset + 4)
        offset += shortEntrySize
        entryCount += 2
        for pin in 0..<ioapicPins {
            table.put(UInt8(3), at: offset)  // I/O interrupt assignment: ISA IRQ n -> IOAPIC pin n
            table.put(interruptTypeVectored, at: offset + 1)
            table.put(UInt16(0), at: offset + 2)  // bus-default polarity and trigger
            table.put(UInt8(0), at: offset + 4)
            table.put(UInt8(pin), at: offset + 5)
            table.put(ioapicID, at: offset + 6)
            table.put(UInt8(pin), at: offset + 7)
            offset += shortEntrySize
            entryCount += 1
        }
        for (type, line) in [(interruptTypeExtINT, UInt8(0)), (interruptTypeNMI, UInt8(1))] {
            table.put(UInt8(4), at: offset)  // local interrupt assignment to every LAPIC
            table.put(type, at: offset + 1)
            table.put(UInt16(0), at: offset + 2)
            table.put(UInt8(0), at: offset + 4)
            table.put(UInt8(0), at: offset + 5)
            table.put(UInt8(0xff), at: offset + 6)
            table.put(line, at: offset + 7)
            offset += shortEntrySize
            entryCount += 1
        }

        let configurationLength = offset - configurationStart
        table.put(ascii: "PCMP", at: configurationStart)
        table.put(UInt16(configurationLength), at: configurationStart + 4)
        table.put(UInt8(4), at: configurationStart + 6)  // spec revision 1.4
        table.put(ascii: "KASA    ", at: configurationStart + 8)
        table.put(ascii: "MICROVM     ", at: configurationStart + 16)
        table.put(entryCount, at: configurationStart + 34)
        table.put(BootLayout.localAPICAddress, at: configurationStart + 36)
        let configurationChecksum = checksumByte(table.bytes[configurationStart..<offset])
        table.put(configurationChecksum, at: configurationStart + 7)

        table.put(ascii: "_MP_", at: 0)
        table.put(UInt32(truncatingIfNeeded: address + UInt64(configurationStart)), at: 4)
        table.put(UInt8(1), at: 8)  // length in 16-byte units
        table.put(UInt8(4), at: 9)
        table.put(checksumByte(table.bytes[0..<floatingPointerSize]), at: 10)
        return table.bytes
    }
}

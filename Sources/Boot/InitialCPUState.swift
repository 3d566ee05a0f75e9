/// The register state a vCPU starts the kernel with, independent of KVM's structures.
public struct InitialCPUState: Sendable, Equatable {
    public var rip: UInt64
    public var rsp: UInt64 = 0
    public var rbp: UInt64 = 0
    public var rsi: UInt64 = 0
    public var rbx: UInt64 = 0
    public var rflags: UInt64 = 0x2  // bit 1 is always set; interrupts off
    public var code: Segment
    public var data: Segment
    public var task: Segment
    public var gdtBase: UInt64 = BootLayout.gdt.value
    public var gdtLimit: UInt16 = 4 * 8 - 1
    public var idtBase: UInt64 = BootLayout.idt.value
    public var idtLimit: UInt16 = 0
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64

    static let cr0ProtectionEnable: UInt64 = 1 << 0
    static let cr0ExtensionType: UInt64 = 1 << 4
    static let cr0Paging: UInt64 = 1 << 31
    static let cr4PhysicalAddressExtension: UInt64 = 1 << 5
    static let eferLongModeEnable: UInt64 = 1 << 8
    static let eferLongModeActive: UInt64 = 1 << 10

    static func segments(sixtyFourBit: Bool) -> (code: Segment, data: Segment, task: Segment) {
        let entries = BootGDT.entries(sixtyFourBit: sixtyFourBit)
        return (Segment(descriptor: entries[1], selector: BootGDT.codeSelector),
                Segment(descriptor: entries[2], selector: BootGDT.dataSelector),
                Segment(descriptor: entries[3], selector: BootGDT.taskSelector))
    }

    /// Linux's 64-bit boot protocol: long mode, identity paging, %rsi = zero page.
    public static func longMode(entry: UInt64, zeroPage: UInt64) -> InitialCPUState {
        let (code, data, task) = segments(sixtyFourBit: true)
        return InitialCPUState(
            rip: entry, rsp: BootLayout.bootStackTop.value, rbp: BootLayout.bootStackTop.value, rsi: zeroPage,
            code: code, data: data, task: task,
            cr0: cr0ProtectionEnable | cr0ExtensionType | cr0Paging,
            cr3: BootLayout.pml4.value,
            cr4: cr4PhysicalAddressExtension,
            efer: eferLongModeEnable | eferLongModeActive)
    }

    /// The PVH ABI: 32-bit protected mode, paging off, flat segments, %ebx = start_info.
    public static func pvh(entry: UInt64, startInfo: UInt64) -> InitialCPUState {
        let (code, data, task) = segments(sixtyFourBit: false)
        return InitialCPUState(
            rip: entry, rbx: startInfo,
            code: code, data: data, task: task,
            cr0: cr0ProtectionEnable | cr0ExtensionType, cr3: 0, cr4: 0, efer: 0)
    }
}

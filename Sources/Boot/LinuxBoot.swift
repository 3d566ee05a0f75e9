import GuestMemory

/// How the kernel will be entered.
public enum KernelEntryProtocol: String, Sendable, Equatable {
    /// 32-bit PVH entry of an ELF with a Xen PHYS32_ENTRY note (fastest: no decompressor).
    case pvh
    /// 64-bit Linux boot protocol entry of an ELF vmlinux (e_entry, zero page in %rsi).
    case elf64
    /// 64-bit Linux boot protocol entry of a bzImage (load address + 0x200).
    case bzImage
}

public struct BootConfiguration: Sendable {
    public var kernel: [UInt8]
    public var initrd: [UInt8]?
    public var commandLine: KernelCommandLine
    public var memorySize: UInt64
    public var vcpuCount: Int
    /// Use the PVH entry when the ELF has one; otherwise its 64-bit entry.
    public var preferPVH: Bool

    public init(kernel: [UInt8], initrd: [UInt8]? = nil, commandLine: KernelCommandLine, memorySize: UInt64, vcpuCount: Int = 1, preferPVH: Bool = true) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.memorySize = memorySize
        self.vcpuCount = vcpuCount
        self.preferPVH = preferPVH
    }
}

public struct BootResult: Sendable {
    public let entryProtocol: KernelEntryProtocol
    public let bootProcessorState: InitialCPUState
    public let kernelRange: Range<UInt64>
    public let initrd: (address: UInt64, size: UInt64)?
}

/// Loads a kernel, initrd and command line into guest memory and writes every boot
/// structure (GDT, page tables, zero page or PVH start_info, e820, MP table).
public enum LinuxBoot {
    public static func load(_ configuration: BootConfiguration, into memory: GuestMemory) throws -> BootResult {
        guard configuration.memorySize >= BootLayout.minimumMemory else {
            throw BootError.memoryTooSmall(configuration.memorySize)
        }
        let lowMemoryEnd = min(configuration.memorySize, BootLayout.mmioHoleStart)
        let kernel = configuration.kernel

        let entryProtocol: KernelEntryProtocol
        let kernelRange: Range<UInt64>
        var setupHeader: [UInt8]?
        var commandLineLimit = BootLayout.commandLineDefaultLimit
        var initrdCeiling = lowMemoryEnd
        var entry: UInt64

        if ELFKernel.isELF(kernel) {
            let elf = try ELFKernel(bytes: kernel)
            let extent = elf.physicalExtent
            guard extent.start >= BootLayout.highMemoryStart else {
                throw BootError.segmentBelowHighMemory(address: extent.start)
            }
            guard extent.end <= lowMemoryEnd else {
                throw BootError.kernelDoesNotFit(loadAddress: extent.start, end: extent.end, memoryEnd: lowMemoryEnd)
            }
            for segment in elf.segments {
                let contents = kernel[Int(segment.fileOffset)..<Int(segment.fileOffset + segment.fileSize)]
                try memory.write(bytes: contents, at: GuestAddress(segment.physicalAddress))
                try memory.fill(0, at: GuestAddress(segment.physicalAddress + segment.fileSize),
                                count: Int(segment.memorySize - segment.fileSize))
            }
            kernelRange = extent.start..<extent.end
            if configuration.preferPVH, let pvh = elf.pvhEntry {
                entryProtocol = .pvh
                entry = pvh
            } else {
                entryProtocol = .elf64
                // vmlinux links e_entry at a virtual address; the 64-bit entry is its physical twin.
                entry = elf.entry >= 0xFFFF_FFFF_8000_0000 ? elf.entry - 0xFFFF_FFFF_8000_0000 : elf.entry
            }
        } else if BzImage.looksLikeBzImage(kernel) {
            let image = try BzImage(bytes: kernel)
            let load = BootLayout.bzImageLoadAddress.value
            let needed = max(UInt64(image.protectedModeKernel.count), image.initSize)
            guard load + needed <= lowMemoryEnd else {
                throw BootError.kernelDoesNotFit(loadAddress: load, end: load + needed, memoryEnd: lowMemoryEnd)
            }
            try memory.write(bytes: image.protectedModeKernel, at: GuestAddress(load))
            kernelRange = load..<(load + needed)
            entryProtocol = .bzImage
            entry = load + BzImage.sixtyFourBitEntryOffset
            setupHeader = image.setupHeader
            commandLineLimit = image.commandLineLimit
            if image.initrdAddressMax > 0 { initrdCeiling = min(initrdCeiling, image.initrdAddressMax + 1) }
        } else {
            throw BootError.unrecognizedKernelFormat
        }

        let commandLine = try configuration.commandLine.encoded(limit: commandLineLimit)
        try memory.write(bytes: commandLine, at: BootLayout.commandLine)

        var initrdPlacement: (address: UInt64, size: UInt64)?
        if let initrd = configuration.initrd {
            let address = try placeInitrd(size: UInt64(initrd.count), above: kernelRange.upperBound, below: initrdCeiling)
            try memory.write(bytes: initrd, at: GuestAddress(address))
            initrdPlacement = (address, UInt64(initrd.count))
        }

        let e820 = E820Map.entries(memorySize: configuration.memorySize)
        try memory.write(bytes: MPTable.build(vcpus: configuration.vcpuCount), at: BootLayout.mpTable)

        let state: InitialCPUState
        switch entryProtocol {
        case .pvh:
            let built = try PVHStartInfo.build(commandLine: BootLayout.commandLine.value, initrd: initrdPlacement, e820: e820)
            try memory.write(bytes: built.startInfo, at: BootLayout.pvhStartInfo)
            try memory.write(bytes: built.moduleList, at: BootLayout.pvhModuleList)
            try memory.write(bytes: built.memoryMap, at: BootLayout.pvhMemoryMap)
            try memory.write(bytes: BootGDT.bytes(sixtyFourBit: false), at: BootLayout.gdt)
            state = .pvh(entry: entry, startInfo: BootLayout.pvhStartInfo.value)
        case .elf64, .bzImage:
            let page = try ZeroPage.build(ZeroPage.Parameters(
                setupHeader: setupHeader, commandLine: BootLayout.commandLine.value,
                commandLineSize: commandLine.count, initrd: initrdPlacement, e820: e820))
            try memory.write(bytes: page, at: BootLayout.zeroPage)
            try memory.write(bytes: BootGDT.bytes(sixtyFourBit: true), at: BootLayout.gdt)
            for (address, table) in PageTables.identityMap() {
                try memory.write(bytes: table, at: GuestAddress(address))
            }
            state = .longMode(entry: entry, zeroPage: BootLayout.zeroPage.value)
        }
        try memory.fill(0, at: BootLayout.idt, count: 8)
        return BootResult(entryProtocol: entryProtocol, bootProcessorState: state, kernelRange: kernelRange, initrd: initrdPlacement)
    }

    /// The highest page-aligned spot for the initrd below `ceiling` and above the kernel,
    /// where Linux expects it (and where it stays clear of the kernel's own early allocations).
    public static func placeInitrd(size: UInt64, above kernelEnd: UInt64, below ceiling: UInt64) throws -> UInt64 {
        guard size > 0, size <= ceiling else { throw BootError.initrdDoesNotFit(size: size) }
        let address = (ceiling - size) & ~(BootLayout.pageSize - 1)
        let kernelEndAligned = (kernelEnd + BootLayout.pageSize - 1) & ~(BootLayout.pageSize - 1)
        guard address >= kernelEndAligned else { throw BootError.initrdDoesNotFit(size: size) }
        return address
    }
}

@testable import Boot
import GuestMemory
import Testing

@Suite struct LinuxBootTests {
    let memorySize: UInt64 = 64 << 20

    func memory() throws -> GuestMemory { try GuestMemory(ranges: BootLayout.ramRanges(memorySize: memorySize)) }

    @Test func pvhKernelIsLoadedWithStartInfo() throws {
        let ram = try memory()
        try ram.fill(0xAA, at: GuestAddress(0x100000), count: 0x3000)  // bss must be zeroed
        let initrd = [UInt8](repeating: 7, count: 5000)
        let result = try LinuxBoot.load(BootConfiguration(kernel: TestImages.simpleELF(), initrd: initrd,
                                                           commandLine: KernelCommandLine("console=ttyS0"), memorySize: memorySize), into: ram)
        #expect(result.entryProtocol == .pvh)
        #expect(result.bootProcessorState.rip == 0x100000 && result.bootProcessorState.rbx == BootLayout.pvhStartInfo.value)
        #expect(try ram.readBytes(at: GuestAddress(0x100000), count: 4) == [0xF4, 0xEB, 0xFD, 0])
        #expect(try ram.read(UInt8.self, at: GuestAddress(0x101FFF)) == 0)
        #expect(try ram.read(UInt32.self, at: BootLayout.pvhStartInfo) == PVHStartInfo.magic)
        #expect(try ram.readBytes(at: BootLayout.commandLine, count: 14) == Array("console=ttyS0".utf8) + [0])
        let placed = try #require(result.initrd)
        #expect(placed.address % 4096 == 0 && placed.address + placed.size <= memorySize && placed.address + 4096 > memorySize - placed.size)
        #expect(try ram.readBytes(at: GuestAddress(placed.address), count: 3) == [7, 7, 7])
        #expect(try ram.readBytes(at: BootLayout.mpTable, count: 4) == Array("_MP_".utf8))
    }

    @Test func elfWithoutPVHUsesTheSixtyFourBitEntry() throws {
        let ram = try memory()
        let kernel = TestImages.elf(entry: 0xFFFF_FFFF_8100_0000,
                                    segments: [.init(physicalAddress: 0x1000000, contents: [1, 2, 3], memorySize: 3)])
        let result = try LinuxBoot.load(BootConfiguration(kernel: kernel, commandLine: KernelCommandLine("x"), memorySize: memorySize), into: ram)
        #expect(result.entryProtocol == .elf64)
        #expect(result.bootProcessorState.rip == 0x1000000)
        #expect(result.bootProcessorState.rsi == BootLayout.zeroPage.value)
        #expect(try ram.read(UInt16.self, at: GuestAddress(BootLayout.zeroPage.value + 0x1fe)) == 0xAA55)
        #expect(try ram.read(UInt64.self, at: BootLayout.pml4) == BootLayout.pdpt.value | 3)
    }

    @Test func preferPVHOffSelectsTheSixtyFourBitEntry() throws {
        let result = try LinuxBoot.load(BootConfiguration(kernel: TestImages.simpleELF(), commandLine: KernelCommandLine(),
                                                           memorySize: memorySize, preferPVH: false), into: memory())
        #expect(result.entryProtocol == .elf64)
    }

    @Test func bzImageLoadsAtOneMiBWithItsHeader() throws {
        let ram = try memory()
        var kernel = [UInt8](repeating: 0x90, count: 0x400)
        kernel[0x200] = 0xF4
        let result = try LinuxBoot.load(BootConfiguration(kernel: TestImages.bzImage(kernel: kernel), initrd: [1, 2, 3],
                                                           commandLine: KernelCommandLine("quiet"), memorySize: memorySize), into: ram)
        #expect(result.entryProtocol == .bzImage)
        #expect(result.bootProcessorState.rip == 0x100200)
        #expect(try ram.read(UInt8.self, at: GuestAddress(0x100200)) == 0xF4)
        let zeroPage = BootLayout.zeroPage.value
        #expect(try ram.read(UInt16.self, at: GuestAddress(zeroPage + 0x206)) == 0x020F)
        #expect(try ram.read(UInt32.self, at: GuestAddress(zeroPage + 0x21c)) == 3)
        #expect(try ram.read(UInt32.self, at: GuestAddress(zeroPage + 0x228)) == UInt32(BootLayout.commandLine.value))
    }

    @Test func commandLineLimitComesFromTheBzImage() {
        #expect(throws: BootError.commandLineTooLong(length: 3000, limit: 2047)) {
            try LinuxBoot.load(BootConfiguration(kernel: TestImages.bzImage(), commandLine: KernelCommandLine(String(repeating: "x", count: 3000)),
                                                 memorySize: memorySize), into: memory())
        }
    }

    @Test func impossiblePlacementsAreClearErrors() throws {
        let low = TestImages.elf(segments: [.init(physicalAddress: 0x8000, contents: [1], memorySize: 1)])
        #expect(throws: BootError.segmentBelowHighMemory(address: 0x8000)) {
            try LinuxBoot.load(BootConfiguration(kernel: low, commandLine: KernelCommandLine(), memorySize: memorySize), into: memory())
        }
        let huge = TestImages.elf(segments: [.init(physicalAddress: 0x100000, contents: [1], memorySize: 128 << 20)])
        #expect(throws: BootError.kernelDoesNotFit(loadAddress: 0x100000, end: 0x100000 + (128 << 20), memoryEnd: memorySize)) {
            try LinuxBoot.load(BootConfiguration(kernel: huge, commandLine: KernelCommandLine(), memorySize: memorySize), into: memory())
        }
        let initrd = [UInt8](repeating: 0, count: 70 << 20)
        #expect(throws: BootError.initrdDoesNotFit(size: 70 << 20)) {
            try LinuxBoot.load(BootConfiguration(kernel: TestImages.simpleELF(), initrd: initrd, commandLine: KernelCommandLine(), memorySize: memorySize), into: memory())
        }
        #expect(throws: BootError.unrecognizedKernelFormat) {
            try LinuxBoot.load(BootConfiguration(kernel: Array("#!/bin/sh\necho not a kernel\n".utf8), commandLine: KernelCommandLine(), memorySize: memorySize), into: memory())
        }
        #expect(throws: BootError.tooManyVCPUs(requested: 40, limit: 32)) {
            try LinuxBoot.load(BootConfiguration(kernel: TestImages.simpleELF(), commandLine: KernelCommandLine(), memorySize: memorySize, vcpuCount: 40), into: memory())
        }
    }

    @Test func initrdPlacementIsHighestAlignedFit() throws {
        #expect(try LinuxBoot.placeInitrd(size: 0x1800, above: 0x200000, below: 0x400000) == 0x3FE000)
        #expect(throws: BootError.self) { try LinuxBoot.placeInitrd(size: 0x300000, above: 0x200000, below: 0x400000) }
        #expect(throws: BootError.self) { try LinuxBoot.placeInitrd(size: 0, above: 0x200000, below: 0x400000) }
    }
}

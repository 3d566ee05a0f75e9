@testable import Boot
import GuestMemory
import Testing

func readU32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
}

func readU64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
}

@Suite struct LayoutTests {
    @Test func smallVMsHaveOneRegion() {
        let ranges = BootLayout.ramRanges(memorySize: 128 << 20)
        #expect(ranges.count == 1)
        #expect(ranges[0].start == GuestAddress(0) && ranges[0].size == 128 << 20)
    }

    @Test func largeVMsSkipTheMMIOHole() {
        let ranges = BootLayout.ramRanges(memorySize: 6 << 30)
        #expect(ranges.count == 2)
        #expect(ranges[0].size == BootLayout.mmioHoleStart)
        #expect(ranges[1].start == GuestAddress(1 << 32))
        #expect(ranges[0].size + ranges[1].size == 6 << 30)
    }

    @Test func fixedAddressesDoNotOverlap() {
        let areas: [(UInt64, UInt64)] = [
            (BootLayout.gdt.value, 32), (BootLayout.idt.value, 8),
            (BootLayout.pvhStartInfo.value, 56), (BootLayout.pvhModuleList.value, 32),
            (BootLayout.pvhMemoryMap.value, UInt64(BootLayout.pvhMemoryMapCapacity * 24)),
            (BootLayout.zeroPage.value, 4096), (BootLayout.pml4.value, 4096), (BootLayout.pdpt.value, 4096),
            (BootLayout.pageDirectories.value, UInt64(4096 * BootLayout.identityMappedGiB)),
            (BootLayout.commandLine.value, UInt64(BootLayout.commandLineHardLimit)),
            (BootLayout.mpTable.value, UInt64(MPTable.size(vcpus: MPTable.maximumVCPUs))),
        ]
        for (index, a) in areas.enumerated() {
            for b in areas[(index + 1)...] {
                #expect(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "0x\(String(a.0, radix: 16)) overlaps 0x\(String(b.0, radix: 16))")
            }
            #expect(a.0 + a.1 <= BootLayout.highMemoryStart)
        }
        #expect(BootLayout.mpTable.value + UInt64(MPTable.size(vcpus: MPTable.maximumVCPUs)) <= 0xA0000)
        #expect(BootLayout.bootStackTop.value < BootLayout.pml4.value)
    }
}

@Suite struct E820Tests {
    @Test func describesLowAndHighMemory() {
        let small = E820Map.entries(memorySize: 256 << 20)
        #expect(small == [
            E820Entry(address: 0, size: 0x9fc00, kind: .ram),
            E820Entry(address: 0x9fc00, size: 0x400, kind: .reserved),
            E820Entry(address: 0x100000, size: (256 << 20) - 0x100000, kind: .ram),
        ])
        let large = E820Map.entries(memorySize: 5 << 30)
        #expect(large.count == 4)
        #expect(large[2] == E820Entry(address: 0x100000, size: 0xC000_0000 - 0x100000, kind: .ram))
        #expect(large[3] == E820Entry(address: 1 << 32, size: (5 << 30) - 0xC000_0000, kind: .ram))
        let ramTotal = large.filter { $0.kind == .ram }.reduce(0) { $0 + $1.size }
        #expect(ramTotal == (5 << 30) - 0x60400)  // all but the EBDA and the 640K-1M window
    }
}

@Suite struct ZeroPageTests {
    @Test func vmlinuxZeroPageCarriesBootFields() throws {
        let e820 = E820Map.entries(memorySize: 64 << 20)
        let page = try ZeroPage.build(.init(setupHeader: nil, commandLine: 0x20000, commandLineSize: 12,
                                            initrd: (0x3000000, 0x5000), e820: e820))
        #expect(page.count == 4096)
        #expect(page[0x1fe] == 0x55 && page[0x1ff] == 0xAA)
        #expect(readU32(page, 0x202) == 0x5372_6448)
        #expect(page[0x210] == 0xFF)
        #expect(readU32(page, 0x228) == 0x20000)
        #expect(readU32(page, 0x238) == 12)
        #expect(readU32(page, 0x218) == 0x3000000)
        #expect(readU32(page, 0x21c) == 0x5000)
        #expect(page[0x1e8] == 3)
        #expect(readU64(page, 0x2d0 + 20 * 2) == 0x100000)
        #expect(readU64(page, 0x2d0 + 20 * 2 + 8) == (64 << 20) - 0x100000)
        #expect(readU32(page, 0x2d0 + 20 * 1 + 16) == 2)
    }

    @Test func bzImageHeaderIsCopiedThenCompleted() throws {
        let image = try BzImage(bytes: TestImages.bzImage())
        let page = try ZeroPage.build(.init(setupHeader: image.setupHeader, commandLine: 0x20000, commandLineSize: 5, initrd: nil, e820: []))
        #expect(readU32(page, 0x202) == 0x5372_6448)
        #expect(page[0x206] == 0x0F && page[0x207] == 0x02)
        #expect(page[0x211] & 0x81 == 0x81)  // LOADED_HIGH kept, CAN_USE_HEAP added
        #expect(readU32(page, 0x218) == 0)
    }

    @Test func tooManyE820EntriesAreRefused() {
        let entries = [E820Entry](repeating: E820Entry(address: 0, size: 4096, kind: .ram), count: 129)
        #expect(throws: BootError.memoryMapTooLarge(entries: 129)) {
            try ZeroPage.build(.init(setupHeader: nil, commandLine: 0, commandLineSize: 0, initrd: nil, e820: entries))
        }
    }
}

@Suite struct PVHTests {
    @Test func startInfoPointsAtModuleAndMemoryMap() throws {
        let e820 = E820Map.entries(memorySize: 64 << 20)
        let built = try PVHStartInfo.build(commandLine: 0x20000, initrd: (0x3000000, 0x1234), e820: e820)
        #expect(readU32(built.startInfo, 0) == 0x336E_C578)
        #expect(readU32(built.startInfo, 4) == 1)
        #expect(readU32(built.startInfo, 12) == 1)
        #expect(readU64(built.startInfo, 16) == BootLayout.pvhModuleList.value)
        #expect(readU64(built.startInfo, 24) == 0x20000)
        #expect(readU64(built.startInfo, 40) == BootLayout.pvhMemoryMap.value)
        #expect(readU32(built.startInfo, 48) == 3)
        #expect(readU64(built.moduleList, 0) == 0x3000000 && readU64(built.moduleList, 8) == 0x1234)
        #expect(built.memoryMap.count == 3 * 24)
        #expect(readU32(built.memoryMap, 24 + 16) == 2)
    }

    @Test func noInitrdMeansNoModules() throws {
        let built = try PVHStartInfo.build(commandLine: 0x20000, initrd: nil, e820: [])
        #expect(readU32(built.startInfo, 12) == 0)
        #expect(readU64(built.startInfo, 16) == 0)
        #expect(built.moduleList.isEmpty)
    }
}

@Suite struct PagingAndSegmentTests {
    @Test func identityMapCoversFourGiBWithLargePages() {
        let tables = PageTables.identityMap()
        #expect(tables.count == 2 + BootLayout.identityMappedGiB)
        let pml4 = tables[0].1, pdpt = tables[1].1
        #expect(readU64(pml4, 0) == BootLayout.pdpt.value | 3)
        #expect(readU64(pdpt, 8 * 3) == (BootLayout.pageDirectories.value + 3 * 4096) | 3)
        let lastDirectory = tables[5].1
        #expect(readU64(lastDirectory, 511 * 8) == (UInt64(3) << 30 + UInt64(511) << 21) | 0x83)
        #expect(readU64(tables[2].1, 0) == 0x83)
    }

    @Test func gdtDescriptorsDecodeToFlatSegments() {
        let code = Segment(descriptor: BootGDT.code64, selector: 8)
        #expect(code.longMode && !code.defaultSize32 && code.present && code.isCodeOrData)
        #expect(code.type == 0xB && code.limit == 0xFFFF_FFFF && code.base == 0)
        let code32 = Segment(descriptor: BootGDT.code32, selector: 8)
        #expect(!code32.longMode && code32.defaultSize32)
        let data = Segment(descriptor: BootGDT.data, selector: 0x10)
        #expect(data.type == 0x3 && data.limit == 0xFFFF_FFFF)
        let task = Segment(descriptor: BootGDT.task, selector: 0x18)
        #expect(task.type == 0xB && !task.isCodeOrData)
        #expect(BootGDT.bytes(sixtyFourBit: true).count == 32)
    }

    @Test func initialStatesFollowEachProtocol() {
        let long = InitialCPUState.longMode(entry: 0x1000000, zeroPage: 0x7000)
        #expect(long.rsi == 0x7000 && long.cr3 == BootLayout.pml4.value)
        #expect(long.cr0 & (1 << 31) != 0 && long.efer & (1 << 10) != 0 && long.cr4 & (1 << 5) != 0)
        let pvh = InitialCPUState.pvh(entry: 0x1000, startInfo: 0x6000)
        #expect(pvh.rbx == 0x6000 && pvh.cr0 & (1 << 31) == 0 && pvh.efer == 0 && pvh.cr0 & 1 == 1)
    }
}

@Suite struct MPTableTests {
    @Test(arguments: [1, 2, 8, 32])
    func checksumsAndCountsAreValid(vcpus: Int) throws {
        let table = try MPTable.build(vcpus: vcpus)
        #expect(Array(table[0..<4]) == Array("_MP_".utf8))
        #expect(table[0..<16].reduce(UInt8(0), &+) == 0)
        #expect(readU32(table, 4) == UInt32(BootLayout.mpTable.value) + 16)
        #expect(Array(table[16..<20]) == Array("PCMP".utf8))
        let length = Int(table[20]) | Int(table[21]) << 8
        #expect(length == table.count - 16)
        #expect(table[16..<(16 + length)].reduce(UInt8(0), &+) == 0)
        let entries = Int(table[16 + 34]) | Int(table[16 + 35]) << 8
        #expect(entries == vcpus + 2 + MPTable.ioapicPins + 2)
        #expect(table[60] == 0 && table[61] == 0 && table[63] == 0b11)  // BSP entry
        if vcpus > 1 { #expect(table[80 + 1] == 1 && table[80 + 3] == 0b01) }
    }

    @Test func refusesImpossibleCounts() {
        #expect(throws: BootError.tooManyVCPUs(requested: 33, limit: 32)) { try MPTable.build(vcpus: 33) }
        #expect(throws: BootError.self) { try MPTable.build(vcpus: 0) }
    }
}

@Suite struct CPUIDPolicyTests {
    let supported = [
        CPUIDEntry(function: 0, eax: 0xD),
        CPUIDEntry(function: 1, eax: 0x906EA, ebx: 0xFF00_0800, ecx: 1 << 23 | 1 << 26, edx: 1 << 28),
        CPUIDEntry(function: 4, index: 0, eax: 0xFC00_0121),
        CPUIDEntry(function: 7, index: 0, ebx: 1 << 5 | 1 << 20),
        CPUIDEntry(function: 0xB, index: 0), CPUIDEntry(function: 0xB, index: 1), CPUIDEntry(function: 0xB, index: 2),
    ]

    @Test func eachVCPUGetsItsAPICIdAndTopology() throws {
        let entries = try CPUIDPolicy().entries(for: 2, of: 4, supported: supported)
        let leaf1 = try #require(entries.first { $0.function == 1 })
        #expect(leaf1.ebx >> 24 == 2)
        #expect((leaf1.ebx >> 16) & 0xFF == 4)
        #expect(leaf1.ebx & 0xFFFF == 0x0800)
        #expect(leaf1.ecx & (1 << 31) != 0)
        #expect(leaf1.edx & (1 << 28) != 0)
        let leaf4 = try #require(entries.first { $0.function == 4 })
        #expect(leaf4.eax >> 26 == 3)
        let topology = entries.filter { $0.function == 0xB }
        #expect(topology.allSatisfy { $0.edx == 2 })
        #expect(topology[1].ebx == 4 && topology[1].eax == 2 && topology[1].ecx == 0x201)
        #expect(topology[2].ecx == 2 && topology[2].ebx == 0)
    }

    @Test func singleVCPUHasNoHyperThreadingBit() throws {
        let leaf1 = try #require(try CPUIDPolicy().entries(for: 0, of: 1, supported: supported).first { $0.function == 1 })
        #expect(leaf1.edx & (1 << 28) == 0)
    }

    @Test func kvmSignatureIsAddedWhenMissing() throws {
        let entries = try CPUIDPolicy().entries(for: 0, of: 1, supported: supported)
        let signature = try #require(entries.first { $0.function == 0x4000_0000 })
        #expect(signature.ebx == 0x4B4D_564B && signature.ecx == 0x564B_4D56 && signature.edx == 0x4D)
    }

    @Test func hiddenFeaturesAreCleared() throws {
        let entries = try CPUIDPolicy(hiding: ["popcnt", "AVX2"]).entries(for: 0, of: 1, supported: supported)
        let leaf1 = try #require(entries.first { $0.function == 1 })
        #expect(leaf1.ecx & (1 << 23) == 0)
        #expect(leaf1.ecx & (1 << 26) != 0)
        let leaf7 = try #require(entries.first { $0.function == 7 })
        #expect(leaf7.ebx == 1 << 20)
    }

    @Test func unknownFeatureNamesAreErrors() {
        #expect(throws: CPUIDPolicyError.unknownFeature("warp-drive")) { try CPUIDPolicy(hiding: ["warp-drive"]) }
    }
}

@Suite struct CommandLineTests {
    @Test func encodesWithTerminatorWithinLimit() throws {
        var line = KernelCommandLine(" console=ttyS0 ")
        line.append("  panic=1 ")
        #expect(line.text == "console=ttyS0 panic=1")
        #expect(try line.encoded(limit: 64) == Array("console=ttyS0 panic=1".utf8) + [0])
    }

    @Test func rejectsOverlongAndNULLines() {
        let long = KernelCommandLine(String(repeating: "a", count: 2048))
        #expect(throws: BootError.commandLineTooLong(length: 2048, limit: 2047)) { try long.encoded(limit: 2048) }
        #expect(throws: BootError.commandLineHasNUL) { try KernelCommandLine("a\u{0}b").encoded(limit: 2048) }
    }
}

@testable import Boot
import Testing

@Suite struct ELFKernelTests {
    @Test func parsesSegmentsAndPVHEntry() throws {
        let kernel = try ELFKernel(bytes: TestImages.simpleELF())
        #expect(kernel.entry == 0x100000)
        #expect(kernel.pvhEntry == 0x100000)
        #expect(kernel.segments == [ELFKernel.Segment(physicalAddress: 0x100000, fileOffset: 120 + 56, fileSize: 3, memorySize: 0x2000)])
        #expect(kernel.physicalExtent.start == 0x100000 && kernel.physicalExtent.end == 0x102000)
    }

    @Test func withoutNoteThereIsNoPVHEntry() throws {
        #expect(try ELFKernel(bytes: TestImages.simpleELF(pvh: false)).pvhEntry == nil)
    }

    @Test func rejectsWrongClassMachineAndType() {
        var bytes = TestImages.simpleELF()
        bytes[4] = 1  // ELFCLASS32
        #expect(throws: BootError.self) { try ELFKernel(bytes: bytes) }
        bytes = TestImages.simpleELF()
        bytes[18] = 183  // AArch64
        #expect(throws: BootError.invalidELF("built for machine 183, not x86-64 (62)")) { try ELFKernel(bytes: bytes) }
        bytes = TestImages.simpleELF()
        bytes[16] = 1  // ET_REL
        #expect(throws: BootError.self) { try ELFKernel(bytes: bytes) }
    }

    @Test func rejectsTruncatedFiles() {
        let bytes = TestImages.simpleELF()
        #expect(throws: BootError.truncated(what: "the ELF header")) { try ELFKernel(bytes: Array(bytes.prefix(40))) }
        #expect(throws: BootError.truncated(what: "the program header table")) { try ELFKernel(bytes: Array(bytes.prefix(100))) }
        #expect(throws: BootError.self) { try ELFKernel(bytes: Array(bytes.dropLast(10))) }
    }

    @Test func rejectsHostileHeaderFields() {
        func patched(_ offset: Int, _ value: UInt64) -> [UInt8] {
            var bytes = TestImages.simpleELF()
            withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { bytes[offset + index] = byte } }
            return bytes
        }
        // Program header table far beyond the file
        #expect(throws: BootError.self) { try ELFKernel(bytes: patched(32, 0xFFFF_FFFF_FFFF_0000)) }
        // Segment file offset beyond the file (p_offset of the first header)
        #expect(throws: BootError.self) { try ELFKernel(bytes: patched(64 + 8, 0x7FFF_FFFF_FFFF_FFFF)) }
        // p_filesz larger than p_memsz
        #expect(throws: BootError.self) { try ELFKernel(bytes: patched(64 + 40, 1)) }
        // Segment that wraps the address space
        #expect(throws: BootError.self) { try ELFKernel(bytes: patched(64 + 24, UInt64.max - 4)) }
        // Note whose description size runs past its segment (descsz of the note)
        #expect(throws: BootError.self) { try ELFKernel(bytes: patched(120 + 56 + 3 + 4, 0xFFFF)) }
    }

    @Test func randomCorruptionNeverCrashes() {
        var generator = SplitMix64(seed: 0x6b61_7361)
        let original = TestImages.simpleELF()
        var rejected = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int(generator.next() % 6 + 1) {
                let position = Int(generator.next() % UInt64(bytes.count))
                bytes[position] = UInt8(truncatingIfNeeded: generator.next())
            }
            if (try? ELFKernel(bytes: bytes)) == nil { rejected += 1 }
        }
        #expect(rejected > 0)
    }
}

@Suite struct BzImageTests {
    @Test func parsesTheSetupHeader() throws {
        let image = try BzImage(bytes: TestImages.bzImage())
        #expect(image.version == 0x020F)
        #expect(image.protectedModeKernel.count == 0x400)
        #expect(image.setupHeader.count == 0x268 - 0x1f1)
        #expect(image.commandLineLimit == 2048)
        #expect(image.initSize == 0x10000)
        #expect(BzImage.looksLikeBzImage(TestImages.bzImage()))
    }

    @Test func rejectsBadHeaders() {
        var bytes = TestImages.bzImage()
        bytes[0x1fe] = 0
        #expect(throws: BootError.invalidBzImage("boot_flag is not 0xAA55")) { try BzImage(bytes: bytes) }
        #expect(throws: BootError.self) { try BzImage(bytes: TestImages.bzImage(version: 0x0206)) }
        #expect(throws: BootError.invalidBzImage("the kernel has no 64-bit entry point (not an x86-64 kernel)")) {
            try BzImage(bytes: TestImages.bzImage(xloadflags: 0))
        }
        #expect(throws: BootError.self) { try BzImage(bytes: Array(TestImages.bzImage().prefix(0x250))) }
        // setup_sects pointing past the end of the file
        #expect(throws: BootError.self) { try BzImage(bytes: TestImages.bzImage(kernel: [], setupSectors: 1)) }
        bytes = TestImages.bzImage()
        bytes[0x1f1] = 200
        #expect(throws: BootError.self) { try BzImage(bytes: bytes) }
    }

    @Test func randomCorruptionNeverCrashes() {
        var generator = SplitMix64(seed: 42)
        let original = TestImages.bzImage()
        for _ in 0..<3000 {
            var bytes = original
            let position = 0x1f0 + Int(generator.next() % 0x80)
            bytes[position] = UInt8(truncatingIfNeeded: generator.next())
            _ = try? BzImage(bytes: bytes)
        }
    }
}

/// A small deterministic generator so corruption tests are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

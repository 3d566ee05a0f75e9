import GuestMemory

/// Every guest-physical address the VMM places something at, in one place.
///
/// Below 1 MiB (the area Linux leaves alone at boot):
///   0x0500  GDT                0x0520  IDT (empty: the guest installs its own)
///   0x6000  PVH start_info     0x6040  PVH module list    0x6100  PVH memory map
///   0x7000  zero page (Linux boot_params)                 0x8ff0  boot stack top
///   0x9000  PML4               0xa000  PDPT               0xb000-0xefff  four PDs (4 GiB identity map)
///   0x20000 kernel command line
///   0x9fc00 MP floating pointer + table (the last KiB of base memory, where Linux looks)
/// From 1 MiB: the kernel, then free RAM; the initrd goes at the top of low RAM.
/// 0xC000_0000-0xFFFF_FFFF is the 32-bit MMIO hole (virtio-mmio, IOAPIC, LAPIC, KVM's TSS);
/// RAM beyond 3 GiB continues at 4 GiB.
public enum BootLayout {
    public static let gdt = GuestAddress(0x500)
    public static let idt = GuestAddress(0x520)
    public static let pvhStartInfo = GuestAddress(0x6000)
    public static let pvhModuleList = GuestAddress(0x6040)
    public static let pvhMemoryMap = GuestAddress(0x6100)
    public static let pvhMemoryMapCapacity = 128
    public static let zeroPage = GuestAddress(0x7000)
    public static let bootStackTop = GuestAddress(0x8ff0)
    public static let pml4 = GuestAddress(0x9000)
    public static let pdpt = GuestAddress(0xa000)
    public static let pageDirectories = GuestAddress(0xb000)
    public static let identityMappedGiB = 4
    public static let commandLine = GuestAddress(0x20000)
    /// Linux x86 COMMAND_LINE_SIZE; a bzImage may announce a larger limit in its header.
    public static let commandLineDefaultLimit = 2048
    public static let commandLineHardLimit = 0x1_0000
    public static let mpTable = GuestAddress(0x9fc00)
    public static let ebdaStart: UInt64 = 0x9fc00
    public static let highMemoryStart: UInt64 = 0x10_0000

    public static let mmioHoleStart: UInt64 = 0xC000_0000
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    public static let virtioMMIOSlotSize: UInt64 = 0x1000
    /// Virtio device n gets the window at base + n * 4 KiB and IOAPIC pin 5 + n
    /// (pin 4 is COM1); the MP table routes pins 0-23.
    public static let virtioFirstInterrupt: UInt32 = 5
    public static let virtioMaximumDevices = 19
    public static let ioapicAddress: UInt32 = 0xFEC0_0000
    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    /// KVM on Intel needs three pages for the real-mode TSS and one for the identity map;
    /// both live in the hole, away from RAM and devices.
    public static let kvmTSSAddress: UInt64 = 0xFFFB_D000
    public static let kvmIdentityMapAddress: UInt64 = 0xFFFB_C000

    /// Linux 64-bit boot protocol: the kernel's 64-bit entry is 0x200 past its load address.
    public static let bzImageLoadAddress = GuestAddress(highMemoryStart)

    public static let minimumMemory: UInt64 = 2 << 20
    public static let pageSize: UInt64 = 4096

    /// The RAM ranges for a VM of `memorySize` bytes: one below the MMIO hole and, when the
    /// VM is larger than 3 GiB, the remainder from 4 GiB up.
    public static func ramRanges(memorySize: UInt64) -> [(start: GuestAddress, size: UInt64)] {
        if memorySize <= mmioHoleStart {
            return [(GuestAddress(0), memorySize)]
        }
        return [(GuestAddress(0), mmioHoleStart), (GuestAddress(mmioHoleEnd), memorySize - mmioHoleStart)]
    }
}

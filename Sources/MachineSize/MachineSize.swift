#if canImport(Glibc)
import Glibc
#endif

/// How big a guest may be and how big it is when nobody says: the one set of rules and
/// defaults for kasa-vmm (its flags and JSON file), the runtime's configuration.toml and
/// `kata-runtime run --memory/--vcpus`. kasa-vmm adds one check of its own at start-up:
/// the memory must hold its boot layout (`BootLayout.minimumMemory`, a few MiB, so that
/// tiny test guests run) and fit in this host's RAM.
public enum MachineSize {
    /// A bare kasa-vmm's memory without --memory (Firecracker's default).
    public static let vmmDefaultMemoryMiB: UInt64 = 128
    /// A sandbox's memory without `default_memory` (Kata ships 2048; a Kasa sandbox runs
    /// one small agent, and the pod's own limits come on top through the containers' cgroups).
    public static let sandboxDefaultMemoryMiB = 512
    /// What a sandbox accepts: below 64 MiB the guest kernel and the agent do not start;
    /// the ceiling only catches typos (1 TiB), the host's RAM is checked when the VM starts.
    public static let sandboxMemoryMiB: ClosedRange<Int> = 64...1_048_576
    /// The vCPU counts a guest may have: the MP table describes at most 32 processors.
    public static let vcpuCounts: ClosedRange<Int> = 1...32
    public static let defaultVCPUs = 1

    /// This host's physical RAM in MiB: no guest may have more.
    public static var hostMemoryMiB: UInt64 {
        (UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))) >> 20
    }

    /// Why `mebibytes` is not a sandbox memory size, for an error naming `what`; nil if it is.
    public static func sandboxMemoryProblem(_ mebibytes: Int, what: String) -> String? {
        sandboxMemoryMiB.contains(mebibytes) ? nil
            : "\(what) \(mebibytes): use \(sandboxMemoryMiB.lowerBound) to \(sandboxMemoryMiB.upperBound) MiB"
    }

    /// Why `count` is not a vCPU count, for an error naming `what`; nil if it is.
    public static func vcpuProblem(_ count: Int, what: String) -> String? {
        vcpuCounts.contains(count) ? nil : "\(what) \(count): use \(vcpuCounts.lowerBound) to \(vcpuCounts.upperBound)"
    }
}

import KVM

/// kvm_pvm emulates guest kernel code and cannot execute some instructions (xsave family,
/// popcnt, cmpxchg16b, ...). CPUID masking does not stop Linux using them, but these
/// parameters do; on hardware KVM they are simply not needed. See docs/kvm-pvm.md.
///
/// `noxsave` has a cost in user space: guest user code runs natively with the host's
/// XCR0, so CPUID there still reports AVX2 and OSXSAVE, glibc picks its AVX2 string and
/// memory functions, and the guest kernel (saving only the FXSAVE area on a task switch)
/// does not keep the upper halves of the ymm registers. Concurrent programs then corrupt
/// each other's copies (seen: kata-agent decoding "" for JSON strings). The kernel hands
/// GLIBC_TUNABLES to init's environment; kata-agent passes it on to the processes it
/// starts, so glibc keeps to SSE there.
///
/// `clocksource=kvm-clock`: Linux prefers the TSC when it is invariant, but on kvm_pvm the
/// guest's TSC is the host's and cannot be set (writes to IA32_TSC are ignored), so in a VM
/// restored from a snapshot the TSC clock jumps ahead by the snapshot's age, and the guest
/// kernel then catches its timekeeping up one second at a time (`second_overflow` per
/// second, emulated: ~0.2 s for a 20-minute-old template, growing with age). kvm-clock is
/// restored exactly (KVM_SET_CLOCK), so with it no time passes for the guest across a
/// snapshot and the runtime sets its wall clock. On hardware KVM the TSC is restored with
/// the other MSRs and the guest keeps its choice.
public enum PVMGuestCommandLine {
    public static let glibcTunables = "glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX_Fast_Unaligned_Load"
    public static let parameters =
        "noxsave clearcpuid=popcnt,cx16,rdrand,rdseed,rdpid,movbe,bmi1,bmi2,avx,avx2,avx512f,umip,smap,smep clocksource=kvm-clock GLIBC_TUNABLES="
        + glibcTunables

    public static func shouldApply(_ mode: PVMCompatibility, isPVMHost: Bool = KVMSystem.isPVMHost) -> Bool {
        switch mode {
        case .on: return true
        case .off: return false
        case .auto: return isPVMHost
        }
    }
}

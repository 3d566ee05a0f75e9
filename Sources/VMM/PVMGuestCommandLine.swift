import KVM

/// kvm_pvm emulates guest kernel code and cannot execute some instructions (xsave family,
/// popcnt, cmpxchg16b, ...). CPUID masking does not stop Linux using them, but these
/// parameters do; on hardware KVM they are simply not needed. See docs/kvm-pvm.md.
public enum PVMGuestCommandLine {
    public static let parameters =
        "noxsave clearcpuid=popcnt,cx16,rdrand,rdseed,rdpid,movbe,bmi1,bmi2,avx,avx2,avx512f,umip,smap,smep"

    public static func shouldApply(_ mode: PVMCompatibility, isPVMHost: Bool = KVMSystem.isPVMHost) -> Bool {
        switch mode {
        case .on: return true
        case .off: return false
        case .auto: return isPVMHost
        }
    }
}

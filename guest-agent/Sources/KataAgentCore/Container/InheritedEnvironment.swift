#if canImport(Glibc)
import Glibc
#endif

/// Variables of the agent's own environment that every process it starts inherits:
/// GLIBC_TUNABLES, which the host sets on a kvm_pvm guest's kernel command line to keep
/// glibc off AVX (whose register state that guest kernel does not preserve; see the
/// VMM's PVMGuestCommandLine). A container's spec may set its own value, which wins.
enum InheritedEnvironment {
    static let names = ["GLIBC_TUNABLES"]

    static var entries: [String] {
        names.compactMap { name in getenv(name).map { name + "=" + String(cString: $0) } }
    }

    /// `environment` with the inherited entries it does not set itself.
    static func adding(to environment: [String]) -> [String] {
        environment + entries.filter { entry in
            let name = entry.prefix { $0 != "=" }
            return !environment.contains { $0.hasPrefix(name + "=") }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

enum HostMemory {
    /// Physical RAM of this host in MiB: the ceiling for one guest's memory.
    static var totalMiB: UInt64 {
        (UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))) >> 20
    }
}

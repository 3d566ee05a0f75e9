import VMM
#if canImport(Glibc)
import Glibc
#endif

/// What `$KASA_VMM_TEST_HOOK` turns on, for kasa-vmm's own tests; absent, nothing.
enum TestHooks {
    /// `forbidden-syscall`: a guest write to port 0xf4 makes its vCPU thread open an IPv4
    /// socket, a call no kasa-vmm thread's seccomp filter allows: the test sees the filter
    /// kill the VMM (or, with --seccomp=log, name the call) at the guest's request.
    static func portHook() -> (@Sendable (UInt32) -> Void)? {
        guard let value = getenv("KASA_VMM_TEST_HOOK"), String(cString: value) == "forbidden-syscall" else { return nil }
        return { _ in
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let failure = errno
            if descriptor >= 0 {
                close(descriptor)
                log("test hook: the vCPU thread opened an IPv4 socket (no seccomp filter stopped it)")
            } else {
                log("test hook: socket(AF_INET) failed: \(String(cString: strerror(failure)))")
            }
        }
    }
}

import CAgentLinux
import AgentProtocol
import Glibc

/// What makes a VM restored from a template's snapshot its own: a random pool and CRNG
/// that no other clone shares, and the current time. Only the guest's PID 1 may change
/// them: an agent running as a host process (tests) refuses, so no test touches the
/// host's clock or entropy pool.
enum CloneIdentity {
    static let minimumSeedBytes = 32
    static let maximumSeedBytes = 4096

    /// Mixes `seed` into the kernel's input pool (a write to /dev/urandom) and makes the
    /// CRNG take a new key from it at once (RNDRESEEDCRNG), rather than at its next
    /// scheduled reseed: every later getrandom differs from the template's and the siblings'.
    static func reseed(_ seed: [UInt8], ownsTheMachine: Bool) throws {
        guard ownsTheMachine else { throw AgentError(.failedPrecondition, "ReseedRandomDev: only the guest's agent may reseed the kernel's CRNG") }
        guard seed.count >= minimumSeedBytes, seed.count <= maximumSeedBytes else {
            throw AgentError(.invalidArgument, "ReseedRandomDev: \(seed.count) bytes of seed (give \(minimumSeedBytes) to \(maximumSeedBytes))")
        }
        let device = open("/dev/urandom", O_WRONLY | O_CLOEXEC)
        guard device >= 0 else { throw AgentError(.internal, "ReseedRandomDev: open /dev/urandom: \(String(cString: strerror(errno)))") }
        defer { close(device) }
        var written = 0
        while written < seed.count {
            let count = seed[written...].withUnsafeBytes { write(device, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw AgentError(.internal, "ReseedRandomDev: write /dev/urandom: \(String(cString: strerror(errno)))") }
            written += count
        }
        guard kasa_reseed_crng(device) == 0 else {
            throw AgentError(.internal, "ReseedRandomDev: RNDRESEEDCRNG: \(String(cString: strerror(errno)))")
        }
    }

    /// Sets CLOCK_REALTIME; the restored kernel's wall clock is the template's otherwise.
    static func setTime(seconds: Int64, microseconds: Int64, ownsTheMachine: Bool) throws {
        guard ownsTheMachine else { throw AgentError(.failedPrecondition, "SetGuestDateTime: only the guest's agent may set the clock") }
        guard seconds >= 0, microseconds >= 0, microseconds < 1_000_000 else {
            throw AgentError(.invalidArgument, "SetGuestDateTime: \(seconds) s \(microseconds) µs is not a time")
        }
        var time = timespec(tv_sec: Int(seconds), tv_nsec: Int(microseconds) * 1000)
        guard clock_settime(CLOCK_REALTIME, &time) == 0 else {
            throw AgentError(.internal, "SetGuestDateTime: clock_settime: \(String(cString: strerror(errno)))")
        }
    }
}

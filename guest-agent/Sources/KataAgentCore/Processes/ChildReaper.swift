import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Reaps every child of the agent (as PID 1 that includes orphans re-parented to it) on
/// one thread, and hands exit statuses to whoever registered interest in a pid. Exits of
/// pids nobody asked about yet are kept for a while, so a process that dies before it is
/// registered is not lost; ones nobody claims within `unclaimedLifetime` (the launcher's
/// short-lived helpers, orphans) are dropped, so the table does not grow without bound.
public final class ChildReaper: @unchecked Sendable {
    public static let shared = ChildReaper()
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var statuses: [Int32: Int32] = [:]
    private var reapedAt: [Int32: Double] = [:]
    private var watched: Set<Int32> = []
    private var started = false
    private var spawns: UInt64 = 0
    static let unclaimedLifetime = 60.0
    /// The longest sleep without a child, in case a spawn site does not call `childStarted`.
    static let idleBackstop = 2.0

    /// Exit status as a shell reports it: the exit code, or 128 + the signal number.
    public static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }

    public func start() {
        let first = monitor.withLock { () -> Bool in
            defer { started = true }
            return !started
        }
        guard first else { return }
        DetachedThread.start { [self] in
            while true {
                reapOnce { status in
                    let pid = waitpid(-1, &status, 0)
                    return (pid, pid < 0 ? errno : 0)
                }
            }
        }
    }

    /// One turn of the reaper: `wait` is waitpid(-1, &status, 0) (returning the pid and,
    /// when it fails, errno); the exit it reports is recorded.
    func reapOnce(_ wait: (inout Int32) -> (pid: Int32, error: Int32)) {
        var status: Int32 = 0
        let spawnsBefore = monitor.withLock { spawns }
        let (pid, error) = wait(&status)
        if pid > 0 {
            let now = monotonicSeconds()
            monitor.update {
                statuses[pid] = ChildReaper.decode(status)
                reapedAt[pid] = now
                for (old, time) in reapedAt where now - time > ChildReaper.unclaimedLifetime && !watched.contains(old) {
                    statuses.removeValue(forKey: old)
                    reapedAt.removeValue(forKey: old)
                }
            }
        } else if error == ECHILD {
            // No child at all: nothing can exit until the agent starts one (as PID 1 it
            // inherits orphans, but only from a child of its own). Polling here costs a
            // guest on kvm_pvm dearly (docs/kvm-pvm.md): sleep until a spawn.
            _ = monitor.wait(until: { spawns != spawnsBefore }, timeout: ChildReaper.idleBackstop)
        } else if error != EINTR {
            usleep(20_000)
        }
    }

    /// Tells the reaper a child exists now (every spawn site calls it): one that found no
    /// child waits for this instead of polling.
    public func childStarted() {
        monitor.update { spawns &+= 1 }
    }

    /// Keeps `pid`'s exit status until `forget` (a process the agent tracks).
    public func watch(_ pid: Int32) {
        monitor.withLock { _ = watched.insert(pid) }
    }

    /// Waits for `pid` to exit; nil on timeout.
    public func waitForExit(of pid: Int32, timeout: Double? = nil) -> Int32? {
        var result: Int32?
        _ = monitor.wait(until: {
            result = statuses[pid]
            return result != nil
        }, timeout: timeout)
        return result
    }

    public func exitStatus(of pid: Int32) -> Int32? {
        monitor.withLock { statuses[pid] }
    }

    /// Drops a recorded exit once the process's record is gone (pids are reused).
    public func forget(_ pid: Int32) {
        monitor.withLock {
            statuses.removeValue(forKey: pid)
            reapedAt.removeValue(forKey: pid)
            watched.remove(pid)
        }
    }
}

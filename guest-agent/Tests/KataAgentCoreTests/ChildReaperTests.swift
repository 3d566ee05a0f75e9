import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// The agent's reaper, one turn at a time against a scripted waitpid (a second reaper on
/// the real waitpid would take the other tests' children). PID 1 in a guest on kvm_pvm
/// pays for every wake-up (docs/kvm-pvm.md): with no child at all the reaper must sleep
/// until the agent starts one, not poll.
@Suite struct ChildReaperTests {
    @Test func anExitIsRecordedAsAShellReportsIt() {
        let reaper = ChildReaper()
        reaper.reapOnce { status in
            status = 3 << 8
            return (4242, 0)
        }
        #expect(reaper.exitStatus(of: 4242) == 3)
        reaper.reapOnce { status in
            status = SIGKILL
            return (4243, 0)
        }
        #expect(reaper.waitForExit(of: 4243, timeout: 1) == 128 + SIGKILL)
    }

    @Test(.timeLimit(.minutes(1)))
    func withNoChildTheReaperSleepsUntilOneIsStarted() {
        let reaper = ChildReaper()
        let looked = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            // The scripted waitpid runs after the reaper noted the spawn count.
            reaper.reapOnce { _ in
                looked.signal()
                return (-1, ECHILD)
            }
            done.signal()
        }
        #expect(looked.wait(timeout: .now() + 10) == .success, "the reaper never looked")
        // A polling reaper came back after 20 ms (and looked again, and again).
        #expect(done.wait(timeout: .now() + 0.5) == .timedOut, "the reaper came back with no child to wait for")
        reaper.childStarted()
        #expect(done.wait(timeout: .now() + 1) == .success, "a spawn did not wake the idle reaper")
    }

    /// A spawn between the reaper's look and its sleep is not missed.
    @Test(.timeLimit(.minutes(1)))
    func aSpawnDuringTheLookIsNotMissed() {
        let reaper = ChildReaper()
        let started = Date()
        reaper.reapOnce { _ in
            reaper.childStarted()
            return (-1, ECHILD)
        }
        #expect(Date().timeIntervalSince(started) < ChildReaper.idleBackstop / 2)
    }
}

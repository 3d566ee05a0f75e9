import Dispatch
import HostOS

/// Records the first reason the VM ends and wakes whoever waits for it.
final class StopLatch: Sendable {
    private let lock = Lock()
    nonisolated(unsafe) private var reason: VMExitReason?
    private let signal = DispatchSemaphore(value: 0)

    /// Returns true for the call that actually stopped the VM.
    @discardableResult
    func stop(_ reason: VMExitReason) -> Bool {
        let first = lock.withLock { () -> Bool in
            guard self.reason == nil else { return false }
            self.reason = reason
            return true
        }
        if first { signal.signal() }
        return first
    }

    var isStopped: Bool { lock.withLock { reason != nil } }

    func wait() -> VMExitReason {
        signal.wait()
        signal.signal()  // Later waiters pass straight through.
        return lock.withLock { reason! }
    }
}

import AgentProtocol
import HostOS

/// The state both backends keep about their child process (kasa-vmm or a host agent):
/// the child, why it exited, whether a teardown was asked for, and who wants to hear of an
/// exit nobody asked for.
final class BackendLifecycle: @unchecked Sendable {
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var child: ChildProcess?
    private var exitReason: String?
    private var tearingDown = false
    private var exitHandlers: [@Sendable (String) -> Void] = []

    /// Records the child and watches its exit (`name` is how messages call it; `explain`
    /// may say what an exit with that wait status means, e.g. from the guest's console).
    /// Returns false when a teardown started meanwhile: the caller must stop the child.
    func adopt(_ process: ChildProcess, name: String, explain: @escaping @Sendable (Int32) -> String? = { _ in nil }) -> Bool {
        let stopping = monitor.withLock { () -> Bool in
            child = process
            return tearingDown
        }
        process.onExit { [self] status in
            let ended = "\(name) \(ChildProcess.describe(waitStatus: status))"
            let reason = explain(status).map { "\($0) (\(ended))" } ?? ended
            let handlers = monitor.update { () -> [@Sendable (String) -> Void] in
                exitReason = reason
                return tearingDown ? [] : exitHandlers
            }
            handlers.forEach { $0(reason) }
        }
        return !stopping
    }

    var failure: String? { monitor.withLock { exitReason } }
    var isTearingDown: Bool { monitor.withLock { tearingDown } }
    var process: ChildProcess? { monitor.withLock { child } }

    func onUnexpectedExit(_ handler: @escaping @Sendable (String) -> Void) {
        let reason: String? = monitor.withLock {
            if tearingDown { return nil }
            if let exitReason { return exitReason }
            exitHandlers.append(handler)
            return nil
        }
        if let reason { handler(reason) }
    }

    /// Marks the teardown and returns the child to stop (nil if none was started).
    func beginTearDown() -> ChildProcess? {
        monitor.withLock { () -> ChildProcess? in
            tearingDown = true
            return child
        }
    }
}

import CLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A poll(2) loop on its own thread for device backends: ioeventfds (queue notifications
/// from the guest) and host sockets. Handlers run on the loop thread. Registration is
/// allowed from any thread; an eventfd wakes the loop to pick up changes.
public final class EventLoop: @unchecked Sendable {
    public typealias Handler = @Sendable (_ revents: Int16) -> Void

    private let lock = Lock()
    private var handlers: [Int32: (events: Int16, handler: Handler)] = [:]  // guarded by lock
    private var stopping = false  // guarded by lock
    private let wakeFD: Int32

    public init() throws {
        wakeFD = clinux_eventfd(0)
        if wakeFD < 0 { throw EventLoopError.eventFD(errno) }
    }

    deinit { close(wakeFD) }

    /// Calls `handler` on the loop thread whenever `fd` has any of `events` (POLLIN, POLLOUT...).
    public func register(_ fd: Int32, events: Int16 = Int16(POLLIN), handler: @escaping Handler) {
        lock.withLock { handlers[fd] = (events, handler) }
        wake()
    }

    public func unregister(_ fd: Int32) {
        lock.withLock { _ = handlers.removeValue(forKey: fd) }
        wake()
    }

    public func stop() {
        lock.withLock { stopping = true }
        wake()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Runs until `stop`; call on a dedicated thread.
    public func run() {
        while true {
            let snapshot: [(Int32, Int16, Handler)] = lock.withLock {
                stopping ? [] : handlers.map { ($0.key, $0.value.events, $0.value.handler) }
            }
            if lock.withLock({ stopping }) { return }
            var descriptors = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            descriptors += snapshot.map { pollfd(fd: $0.0, events: $0.1, revents: 0) }
            let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if descriptors[0].revents != 0 {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
            }
            for (index, entry) in snapshot.enumerated() where descriptors[index + 1].revents != 0 {
                // A handler may have been removed by an earlier one in this round.
                let stillRegistered = lock.withLock { handlers[entry.0] != nil }
                if stillRegistered { entry.2(descriptors[index + 1].revents) }
            }
        }
    }
}

public enum EventLoopError: Error, Equatable {
    case eventFD(Int32)
}

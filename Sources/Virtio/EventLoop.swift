import CLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A poll(2) loop on its own thread for device backends: ioeventfds (queue notifications
/// from the guest), host sockets and timers (poll's timeout is the nearest deadline), so a
/// device's backend work all happens on one thread. Handlers and timers run on the loop
/// thread. Registration and scheduling are allowed from any thread; an eventfd wakes the
/// loop to pick up changes.
public final class EventLoop: @unchecked Sendable {
    public typealias Handler = @Sendable (_ revents: Int16) -> Void

    private let lock = Lock()
    private var handlers: [Int32: Registration] = [:]  // guarded by lock
    /// Numbers each registration, so a round can tell the one it polled from a later one
    /// on the same descriptor number (guarded by lock).
    private var nextRegistration: UInt64 = 0
    private var closedWhileWatched = 0  // guarded by lock
    private var stopping = false  // guarded by lock
    private var timers: [Timer] = []  // guarded by lock; unordered (a handful per device)
    private var nextTimerSequence: UInt64 = 0  // guarded by lock

    private struct Registration {
        let events: Int16
        let handler: Handler
        let serial: UInt64
    }

    private struct Timer {
        let deadline: UInt64
        let sequence: UInt64  // equal deadlines fire in the order they were scheduled
        let work: @Sendable () -> Void
    }

    /// CLOCK_MONOTONIC in nanoseconds: the clock of `schedule(after:)` deadlines.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
    private let wakeFD: Int32
    /// Holds the loop thread between rounds while the VM is paused (no handler or timer runs).
    private let gate = PauseGate(workers: 1)

    public init() throws {
        wakeFD = clinux_eventfd(0)
        if wakeFD < 0 { throw EventLoopError.eventFD(errno) }
    }

    deinit { close(wakeFD) }

    /// Descriptors found closed while still registered (poll said POLLNVAL): each is an
    /// owner that closed before unregistering. The loop stops watching them.
    public var descriptorsClosedWhileWatched: Int { lock.withLock { closedWhileWatched } }

    /// Whether a handler is registered for `fd` now.
    public func isWatching(_ fd: Int32) -> Bool { lock.withLock { handlers[fd] != nil } }

    /// Calls `handler` on the loop thread whenever `fd` has any of `events` (POLLIN, POLLOUT...).
    public func register(_ fd: Int32, events: Int16 = Int16(POLLIN), handler: @escaping Handler) {
        lock.withLock {
            handlers[fd] = Registration(events: events, handler: handler, serial: nextRegistration)
            nextRegistration &+= 1
        }
        wake()
    }

    public func unregister(_ fd: Int32) {
        lock.withLock { _ = handlers.removeValue(forKey: fd) }
        wake()
    }

    /// Runs `work` on the loop thread once `nanoseconds` have passed (or at once, on the
    /// next round, for 0). Timers still pending when the loop stops never run.
    public func schedule(after nanoseconds: UInt64, _ work: @escaping @Sendable () -> Void) {
        let (deadline, overflow) = EventLoop.now().addingReportingOverflow(nanoseconds)
        lock.withLock {
            timers.append(Timer(deadline: overflow ? .max : deadline, sequence: nextTimerSequence, work: work))
            nextTimerSequence &+= 1
        }
        wake()
    }

    /// Removes and returns the timers due by `now`, in deadline order, and the milliseconds
    /// until the next one (-1: none, poll waits for a descriptor).
    private func takeDueTimers(now: UInt64) -> (due: [Timer], timeout: Int32) {
        lock.withLock {
            let due = timers.filter { $0.deadline <= now }.sorted { ($0.deadline, $0.sequence) < ($1.deadline, $1.sequence) }
            timers.removeAll { $0.deadline <= now }
            guard let next = timers.map(\.deadline).min() else { return (due, -1) }
            // Round up, so that a wake-up never comes before the deadline it is for.
            let milliseconds = (next - now + 999_999) / 1_000_000
            return (due, Int32(min(milliseconds, UInt64(Int32.max))))
        }
    }

    public func stop() {
        lock.withLock { stopping = true }
        gate.release()
        wake()
    }

    /// Stops the loop between rounds: once this returns true, no handler or timer runs until
    /// `resume`. False when the loop thread did not stop within `timeout` seconds (or the
    /// loop is stopping); call `resume` either way.
    public func pause(timeout: Double = 5) -> Bool {
        gate.pause(timeout: timeout) { wake() }
    }

    public func resume() {
        gate.resume()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Runs until `stop`; call on a dedicated thread.
    public func run() {
        while round(waiting: true) {}
    }

    /// One round on the calling thread without waiting: the timers due and the handlers
    /// of descriptors ready now. For a caller that drives the loop itself instead of a
    /// loop thread (the device fuzzer, which must stay deterministic).
    public func runReady() {
        _ = round(waiting: false)
    }

    /// Runs what is due and ready, waiting (with `waiting`) for the first descriptor or
    /// timer; false once the loop is stopping or poll failed.
    private func round(waiting: Bool) -> Bool {
        let snapshot: [(fd: Int32, registration: Registration)] = lock.withLock {
            stopping ? [] : handlers.map { ($0.key, $0.value) }
        }
        if lock.withLock({ stopping }) { return false }
        if gate.pauseRequested {
            gate.park(worker: 0)
            return true
        }
        let (due, timeout) = takeDueTimers(now: EventLoop.now())
        for timer in due { timer.work() }
        if !due.isEmpty {
            // The work may have scheduled more, or made a descriptor's handler stale: look again.
            return true
        }
        var descriptors = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        descriptors += snapshot.map { pollfd(fd: $0.fd, events: $0.registration.events, revents: 0) }
        let ready = poll(&descriptors, nfds_t(descriptors.count), waiting ? timeout : 0)
        if ready < 0 { return errno == EINTR }
        if descriptors[0].revents != 0 {
            var value: UInt64 = 0
            _ = read(wakeFD, &value, 8)
        }
        for (index, entry) in snapshot.enumerated() where descriptors[index + 1].revents != 0 {
            // The registration polled may be gone: removed by an earlier handler of this
            // round or by another thread, its descriptor closed, and the number perhaps
            // opened and registered again for another file. Its handler must not run then:
            // it would act on that file (an eventfd's 8-byte read taking a pipe's bytes).
            let revents = descriptors[index + 1].revents
            let current = lock.withLock { () -> Bool in
                guard handlers[entry.fd]?.serial == entry.registration.serial else { return false }
                if revents & Int16(POLLNVAL) != 0 {
                    // Closed while registered (its owner's bug): stop watching the number,
                    // or poll reports it at once every round and the loop spins.
                    handlers[entry.fd] = nil
                    closedWhileWatched &+= 1
                }
                return true
            }
            if current { entry.registration.handler(revents) }
        }
        return true
    }
}

public enum EventLoopError: Error, Equatable {
    case eventFD(Int32)
}

import GuestMemory

/// What `watch` found and did since the transport was made.
public struct TransportWatchCounts: Sendable, Equatable {
    /// Queues whose available entries had waited a whole watch interval without a
    /// notification, and were served when the watch notified the device itself.
    public var servedWithoutNotification = 0
    /// Interrupts raised again because the driver had left them unacknowledged past the
    /// timeout.
    public var interruptsRaisedAgain = 0

    public var isEmpty: Bool { servedWithoutNotification == 0 && interruptsRaisedAgain == 0 }
}

/// A safety net for lost notifications in either direction (issue 15, fault 1: a guest
/// whose partition scan waited for good on its first disk request). Called periodically by
/// the VMM's event loop; every finding is counted and the first ones are reported, so a
/// hang that was rescued still leaves its trace in kasa-vmm's log.
extension VirtioMMIOTransport {
    /// Looks at each ready queue and the interrupt status at `now` (nanoseconds):
    /// - a queue whose available index was ahead of the device at the last watch and still
    ///   is, with no progress between, is notified here (the driver's notification was lost
    ///   or never sent); counted only if the device then took something from it (a receive
    ///   queue holds buffers for frames that have not come, and is left alone);
    /// - an interrupt status the driver has not acknowledged for `interruptTimeout` is raised
    ///   again (an edge lost between the irqfd and the guest's handler). A driver's handler
    ///   that finds nothing to do costs a spurious interrupt, nothing more.
    public func watch(now: UInt64, interruptTimeout: UInt64) {
        lock.withLock {
            guard active, status & Status.needsReset == 0 else {
                let counts = watchState.counts
                watchState = WatchState(queueCount: queues.count)
                watchState.counts = counts
                return
            }
            for (index, queue) in queues.enumerated() where queue.ready {
                guard let available = try? memory.read(UInt16.self, at: queue.availableRing.advanced(by: 2)) else { continue }
                let next = queue.nextAvailable
                guard available != next else {
                    watchState.waitingAt[index] = nil
                    continue
                }
                guard watchState.waitingAt[index] == next else {
                    watchState.waitingAt[index] = next
                    watchState.notificationsWhenSeen[index] = watchState.notifications[index]
                    continue
                }
                watchState.waitingAt[index] = nil
                // Read before the device moves it: where the device last asked to be notified.
                let availEvent = queue.eventIndex
                    ? (try? memory.read(UInt16.self, at: queue.availEventAddress())).map { String($0) } ?? "unreadable"
                    : "none (no EVENT_IDX)"
                device.queueNotified(index)
                if queue.nextAvailable != next {
                    watchState.counts.servedWithoutNotification += 1
                    if watchState.counts.servedWithoutNotification <= 10 {
                        // Which side failed: avail_event equal to the device's index means the
                        // device had asked to be notified once the driver added that entry, and
                        // no notification came through the transport since.
                        let since = watchState.notifications[index] &- watchState.notificationsWhenSeen[index]
                        report("virtio-mmio: queue \(index) had \(available &- next) available entries waiting with no notification; "
                               + "served them (a lost notification): device at \(next), available index \(available), "
                               + "avail_event \(availEvent), \(since) notifications since first seen waiting, "
                               + "\(watchState.notifications[index]) in all")
                    }
                }
            }
            if interruptStatus == 0 {
                watchState.interruptPendingSince = nil
            } else if let since = watchState.interruptPendingSince {
                if now &- since >= interruptTimeout {
                    raiseInterrupt()
                    watchState.interruptPendingSince = now
                    watchState.counts.interruptsRaisedAgain += 1
                    if watchState.counts.interruptsRaisedAgain <= 10 {
                        report("virtio-mmio: interrupt status \(interruptStatus) unacknowledged for \(interruptTimeout / 1_000_000) ms; raised again")
                    }
                }
            } else {
                watchState.interruptPendingSince = now
            }
        }
    }

    public var watchCounts: TransportWatchCounts { lock.withLock { watchState.counts } }
}

/// `watch`'s memory between calls, guarded by the transport's lock.
struct WatchState {
    /// Per queue: the device's next available index when entries were seen waiting at the
    /// last watch; nil when none waited.
    var waitingAt: [UInt16?]
    var interruptPendingSince: UInt64?
    var counts = TransportWatchCounts()
    /// Per queue: notifications the driver sent through the transport (register or
    /// ioeventfd), and that count when entries were first seen waiting.
    var notifications: [UInt64]
    var notificationsWhenSeen: [UInt64]

    init(queueCount: Int) {
        waitingAt = Array(repeating: nil, count: queueCount)
        notifications = Array(repeating: 0, count: queueCount)
        notificationsWhenSeen = Array(repeating: 0, count: queueCount)
    }
}

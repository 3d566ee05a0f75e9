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
    /// - a queue whose available index has been ahead of the device for `notificationTimeout`
    ///   with neither side moving (the device took nothing, the driver added nothing) is
    ///   notified here: the driver's notification was lost or never sent. Counted only if the
    ///   device then took something from it (a receive queue holds buffers for frames that
    ///   have not come, and is left alone). Entries the driver is still adding are not
    ///   waiting yet: Linux notifies once after a batch (virtio-vsock's receive fill adds up
    ///   to 256 buffers, then kicks), and on an emulated guest kernel a batch can outlast a
    ///   watch interval;
    /// - an interrupt status the driver has not acknowledged for `interruptTimeout` is raised
    ///   again (an edge lost between the irqfd and the guest's handler). A driver's handler
    ///   that finds nothing to do costs a spurious interrupt, nothing more.
    public func watch(now: UInt64, notificationTimeout: UInt64, interruptTimeout: UInt64) {
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
                    watchState.waiting[index] = nil
                    continue
                }
                guard let waiting = watchState.waiting[index], waiting.device == next, waiting.available == available else {
                    // New entries, or either side moved: the wait starts now.
                    watchState.waiting[index] = WaitingEntries(device: next, available: available, since: now,
                                                               notifications: watchState.notifications[index])
                    continue
                }
                guard now &- waiting.since >= notificationTimeout else { continue }
                watchState.waiting[index] = nil
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
                        let since = watchState.notifications[index] &- waiting.notifications
                        report("virtio-mmio: queue \(index) had \(available &- next) available entries waiting with no notification "
                               + "for \((now &- waiting.since) / 1_000_000) ms; "
                               + "served them (a lost notification): device at \(next), available index \(available), "
                               + "avail_event \(availEvent), \(since) notifications since the wait began, "
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
    /// Per queue: the entries seen waiting since an earlier look, with both sides where they
    /// were then; nil when none waited.
    var waiting: [WaitingEntries?]
    var interruptPendingSince: UInt64?
    var counts = TransportWatchCounts()
    /// Per queue: notifications the driver sent through the transport (register or
    /// ioeventfd).
    var notifications: [UInt64]

    init(queueCount: Int) {
        waiting = Array(repeating: nil, count: queueCount)
        notifications = Array(repeating: 0, count: queueCount)
    }
}

/// Available entries a queue's device had not taken, as one look found them.
struct WaitingEntries {
    /// The device's next available index and the driver's available index.
    var device: UInt16
    var available: UInt16
    /// When the watch first saw the queue in this state (nanoseconds).
    var since: UInt64
    /// The queue's notification count then.
    var notifications: UInt64
}

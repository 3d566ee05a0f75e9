import Testing
import VMM

/// The real-kernel tests' check that no virtio notification was lost: the event loop's
/// watch serves entries a driver left without one (a request would otherwise wait for
/// good, issue 15 fault 1), and every such rescue is still a fault, on every device and
/// every host. With it, that no device closed a descriptor its event loop still watched
/// (the number could name another file by the loop's next look).
enum NotificationCheck {
    static func expectNoneLost(_ vm: MicroVM, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(vm.lostNotifications == 0, "a notification was lost (served by the watch): \(vm.virtioWatchDiagnosis())",
                sourceLocation: sourceLocation)
        #expect(vm.descriptorsClosedWhileWatched == 0, "a device closed \(vm.descriptorsClosedWhileWatched) descriptor(s) its event loop still watched",
                sourceLocation: sourceLocation)
    }
}

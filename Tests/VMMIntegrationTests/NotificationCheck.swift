import Testing
import VMM

/// The real-kernel tests' check that no virtio notification was lost: the event loop's
/// watch serves entries a driver left without one (a request would otherwise wait for
/// good, issue 15 fault 1), and every such rescue is still a fault, on every device and
/// every host.
enum NotificationCheck {
    static func expectNoneLost(_ vm: MicroVM, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(vm.lostNotifications == 0, "a notification was lost (served by the watch): \(vm.virtioWatchDiagnosis())",
                sourceLocation: sourceLocation)
    }
}

import KVM
import Testing
import VMM

/// The real-kernel tests' check that no virtio notification was lost: the event loop's
/// watch serves entries a driver left without one (a request would otherwise wait for
/// good, issue 15 fault 1), and every such rescue is still a fault.
enum NotificationCheck {
    /// virtio-vsock's device type.
    static let vsock: UInt32 = 19

    /// Fails for a lost notification on any device, with one exception that is a known
    /// issue on kvm_pvm only: vsock's receive queue, whose first kick (the driver filling
    /// it while a host connection already waited) has been seen never to reach kasa-vmm.
    /// The watch's account then showed the device's avail_event right (its own index, 0)
    /// and no notification at all for that queue: the kick was lost between the guest and
    /// the transport, not attributed yet; the watch served the buffers within 500 ms.
    static func expectNoneLost(_ vm: MicroVM, sourceLocation: SourceLocation = #_sourceLocation) {
        let onVsock = vm.lostNotifications(ofType: vsock)
        #expect(vm.lostNotifications - onVsock == 0, "a notification was lost (served by the watch): \(vm.virtioWatchDiagnosis())",
                sourceLocation: sourceLocation)
        guard onVsock > 0 else { return }
        if KVMSystem.isPVMHost {
            withKnownIssue("issue 15: on kvm_pvm a vsock receive-queue kick never reached kasa-vmm; the watch served it",
                           isIntermittent: true) {
                Issue.record("vsock: \(vm.virtioWatchDiagnosis())", sourceLocation: sourceLocation)
            }
        } else {
            Issue.record("a vsock notification was lost (served by the watch): \(vm.virtioWatchDiagnosis())", sourceLocation: sourceLocation)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A NIC with no cable: the backend of a virtio-net device that has no host network yet
/// (`kasa-vmm --net unplugged`), e.g. a VM template's network slot, whose clones are
/// restored with a TAP in its place. Frames the guest sends are dropped (the socket fills
/// and writes fail, which the device counts as drops); none ever arrive.
public final class UnpluggedBackend: NetBackend, @unchecked Sendable {
    public let descriptor: Int32
    /// The other end, never read: kept open so that writes fail with EAGAIN, not EPIPE.
    private let peer: Int32

    public init() throws(NetDeviceError) {
        var ends: [Int32] = [-1, -1]
        let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        guard socketpair(AF_UNIX, type, 0, &ends) == 0 else {
            throw .invalidSetting("an unplugged NIC's socket pair: \(String(cString: strerror(errno)))")
        }
        descriptor = ends[0]
        peer = ends[1]
    }

    public func setOffloads(_ flags: UInt32) -> Bool { true }

    deinit {
        close(descriptor)
        close(peer)
    }
}

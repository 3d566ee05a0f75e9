import Glibc
import HostOS
import Virtio

/// A SOCK_SEQPACKET socketpair standing in for a TAP: one datagram per frame, each behind
/// its 12-byte virtio-net header, as a TAP opened with IFF_VNET_HDR behaves. The device
/// gets `descriptor`; whoever plays the host's network (a test, the device fuzzer) uses
/// `peer`. Both ends are non-blocking.
public final class SocketPairBackend: NetBackend, @unchecked Sendable {
    public let descriptor: Int32
    public let peer: Int32
    private let lock = Lock()
    private var offloadHistory: [UInt32] = []
    /// Every TUNSETOFFLOAD the device asked for, in order.
    public var offloads: [UInt32] { lock.withLock { offloadHistory } }

    public func setOffloads(_ flags: UInt32) -> Bool {
        lock.withLock { offloadHistory.append(flags) }
        return true
    }

    public init() throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw MockDriverError("socketpair: \(String(cString: strerror(errno)))")
        }
        descriptor = pair[0]
        peer = pair[1]
        HostSupport.setNonBlocking(descriptor)
        HostSupport.setNonBlocking(peer)
    }

    deinit {
        close(descriptor)
        close(peer)
    }

    /// One frame as the host's network sends it to the guest (a zero header in front).
    public func send(_ frame: [UInt8]) {
        let header = [UInt8](repeating: 0, count: NetDevice.headerSize)
        _ = (header + frame).withUnsafeBytes { write(peer, $0.baseAddress, $0.count) }
    }

    /// The next datagram the device wrote (header included), or nil within `seconds`.
    public func receive(seconds: Double = 2) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let deadline = EventLoop.now() + UInt64(seconds * 1e9)
        while EventLoop.now() < deadline {
            let count = buffer.withUnsafeMutableBytes { read(peer, $0.baseAddress, $0.count) }
            if count >= 0 { return Array(buffer.prefix(count)) }
            usleep(1000)
        }
        return nil
    }
}

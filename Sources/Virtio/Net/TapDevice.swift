import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The host end of a virtio-net device: a TAP opened with IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR, non-blocking, with a 12-byte virtio-net header in front of every frame
/// (the same header the guest driver uses, so frames pass between the two unchanged).
/// It starts without receive offloads (whole, checksummed frames); the device enables the
/// ones the guest's driver accepts (`setOffloads`). Owns its descriptor.
public final class TapDevice: @unchecked Sendable {
    public let descriptor: Int32
    public let name: String

    /// Opens (or creates) the TAP `name` in this process's network namespace.
    public init(name: String) throws(NetDeviceError) {
        guard !name.isEmpty, name.utf8.count < Int(CLINUX_IFNAMSIZ), !name.contains("/") else {
            throw .invalidTap("'\(name)' is not a network interface name (1-15 bytes, no '/')")
        }
        var buffer = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
        let fd = clinux_tap_open(name, &buffer)
        guard fd >= 0 else { throw .invalidTap("cannot open TAP \(name) through /dev/net/tun: \(String(cString: strerror(errno)))") }
        descriptor = fd
        self.name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try configure()
    }

    /// Takes over an inherited descriptor (`--net fd=N`): it must be a TAP opened with
    /// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (the runtime opens it in the pod's namespace).
    public init(adopting fd: Int32) throws(NetDeviceError) {
        var buffer = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
        guard fd >= 0, fcntl(fd, F_GETFD) >= 0 else { throw .invalidTap("descriptor \(fd) is not open") }
        guard clinux_tap_check(fd, &buffer) == 0 else {
            throw .invalidTap("descriptor \(fd) is not a TAP opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR: \(String(cString: strerror(errno)))")
        }
        descriptor = fd
        name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        try configure()
    }

    private func configure() throws(NetDeviceError) {
        guard clinux_tap_configure(descriptor, Int32(NetDevice.headerSize), 0) == 0 else {
            // Fully initialised by now: deinit closes the descriptor.
            let reason = String(cString: strerror(errno))
            throw .invalidTap("TAP \(name): cannot set a \(NetDevice.headerSize)-byte header without offloads: \(reason)")
        }
    }

    /// TUNSETOFFLOAD with TUN_F_* flags (`CLINUX_TUN_F_*`); false if the kernel refused them.
    public func setOffloads(_ flags: UInt32) -> Bool {
        clinux_tap_set_offloads(descriptor, flags) == 0
    }

    deinit { close(descriptor) }
}

public enum NetDeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidTap(String)
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .invalidTap(let text), .invalidSetting(let text): return text
        }
    }
}

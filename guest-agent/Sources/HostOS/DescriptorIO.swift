#if canImport(Glibc)
import Glibc
#endif

/// Whole-buffer reads and writes on a blocking descriptor.
public enum DescriptorIO {
    /// Writes all of `bytes`, retrying EINTR and short writes: with send(MSG_NOSIGNAL) on a
    /// socket (a peer that is gone is EPIPE, never a SIGPIPE that would end the process),
    /// with write(2) otherwise. Returns 0, or the errno that stopped it.
    @discardableResult
    public static func write(_ descriptor: Int32, _ bytes: [UInt8], socket: Bool) -> Int32 {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { chunk in
                socket ? send(descriptor, chunk.baseAddress, chunk.count, Int32(MSG_NOSIGNAL))
                       : Glibc.write(descriptor, chunk.baseAddress, chunk.count)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if count == 0 { return EIO }
            offset += count
        }
        return 0
    }

    /// Writes everything to a socket or any other descriptor; false if the peer is gone.
    @discardableResult
    public static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        switch write(descriptor, bytes, socket: true) {
        case 0: return true
        case ENOTSOCK: return write(descriptor, bytes, socket: false) == 0  // Nothing was sent yet.
        default: return false
        }
    }

    /// Up to `limit` bytes; [] at end of stream or on error.
    public static func readSome(_ descriptor: Int32, limit: Int = 65536) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: limit)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            return count > 0 ? Array(buffer.prefix(count)) : []
        }
    }
}

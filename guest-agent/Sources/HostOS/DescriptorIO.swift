#if canImport(Glibc)
import Glibc
#endif

/// Whole-buffer reads and writes on a blocking descriptor.
public enum DescriptorIO {
    /// Writes everything; false if the peer is gone.
    @discardableResult
    public static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == ENOTSOCK {
                    let plain = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                    if plain < 0 { if errno == EINTR { continue }; return false }
                    offset += plain
                    continue
                }
                return false
            }
            offset += count
        }
        return true
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

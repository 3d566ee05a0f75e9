public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The access [address, address + length) is not entirely inside one RAM region.
    case outOfRange(address: GuestAddress, length: UInt64)
    case invalidLayout(String)
    case mappingFailed(size: UInt64, errno: Int32)
    case snapshotWriteFailed(errno: Int32)

    public var description: String {
        switch self {
        case .outOfRange(let address, let length):
            return "guest memory access of \(length) bytes at \(address) is outside guest RAM"
        case .invalidLayout(let reason):
            return "invalid guest memory layout: \(reason)"
        case .mappingFailed(let size, let errno):
            return "cannot map \(size >> 20) MiB of guest memory (errno \(errno))"
        case .snapshotWriteFailed(let errno):
            return "cannot write guest memory to the snapshot (errno \(errno))"
        }
    }
}

/// Why a vsock device could not be created or activated.
public enum VsockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// CIDs 0-2 are reserved (hypervisor, local, host) and 0xFFFFFFFF means "any".
    case invalidGuestCID(UInt64)
    case cannotListen(path: String, reason: String)
    case missingQueues(Int)
    case tornDown

    public var description: String {
        switch self {
        case .invalidGuestCID(let cid):
            return "guest CID \(cid) is invalid: use a value from 3 to 4294967294 (0-2 are reserved, 4294967295 means any)"
        case .cannotListen(let path, let reason): return "cannot listen on \(path): \(reason)"
        case .missingQueues(let count): return "vsock needs 3 queues (rx, tx, event), the transport gave \(count)"
        case .tornDown: return "the vsock device was torn down"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A NETLINK_ROUTE socket: requests answered with an acknowledgement, and dumps. It talks
/// to the network namespace it was created in, whatever thread uses it later.
public final class NetlinkSocket: @unchecked Sendable {
    private let descriptor: Int32
    private var sequence: UInt32 = 0
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init() throws(NetlinkError) {
        descriptor = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0 /* NETLINK_ROUTE */)
        guard descriptor >= 0 else { throw .system("socket(AF_NETLINK)", errno) }
    }

    deinit { close(descriptor) }

    /// Sends `message` with NLM_F_REQUEST | NLM_F_ACK; returns when the kernel acknowledges,
    /// or throws its error (`.kernel(errno, what)`).
    public func request(_ message: NetlinkMessage, _ what: @autoclosure () -> String) throws(NetlinkError) {
        var message = message
        message.flags |= Netlink.flagRequest | Netlink.flagAcknowledge
        let sequence = try transmit(&message)
        while true {
            for reply in try receive() where reply.sequence == sequence {
                if reply.type == Netlink.messageError {
                    let code = reply.payload.count >= 4 ? Int32(bitPattern: reply.payload.littleEndian(UInt32.self, at: 0)) : 0
                    if code == 0 { return }
                    throw .kernel(what(), -code)
                }
            }
        }
    }

    /// Sends a dump request of `type` with `header` (the family header naming what to
    /// list) and returns every message of the dump.
    public func dump(_ type: UInt16, header: [UInt8]) throws(NetlinkError) -> [NetlinkMessage] {
        var message = NetlinkMessage(type: type, flags: Netlink.flagRequest | Netlink.flagDump, payload: header)
        let sequence = try transmit(&message)
        var results: [NetlinkMessage] = []
        while true {
            for reply in try receive() where reply.sequence == sequence {
                switch reply.type {
                case Netlink.messageDone: return results
                case Netlink.messageError:
                    let code = reply.payload.count >= 4 ? Int32(bitPattern: reply.payload.littleEndian(UInt32.self, at: 0)) : 0
                    if code == 0 { return results }
                    throw .kernel("dump \(type)", -code)
                default: results.append(reply)
                }
            }
        }
    }

    private func transmit(_ message: inout NetlinkMessage) throws(NetlinkError) -> UInt32 {
        sequence &+= 1
        message.sequence = sequence
        let bytes = message.bytes
        // An unconnected netlink socket sends to the kernel (pid 0).
        let sent = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw .system("send to netlink", errno) }
        return sequence
    }

    private func receive() throws(NetlinkError) -> [NetlinkMessage] {
        var count = -1
        repeat {
            count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        } while count < 0 && errno == EINTR
        guard count > 0 else { throw .system("receive from netlink", errno) }
        guard let messages = NetlinkMessage.parse(Array(buffer.prefix(count))) else { throw .malformed("a reply with a bad length") }
        return messages
    }
}

public enum NetlinkError: Error, Equatable, Sendable, CustomStringConvertible {
    case system(String, Int32)
    case kernel(String, Int32)
    case malformed(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .system(let what, let code), .kernel(let what, let code): return "\(what): \(String(cString: strerror(code)))"
        case .malformed(let what): return "netlink: \(what)"
        case .notFound(let what): return what
        }
    }

    /// The errno behind a kernel or system failure.
    public var code: Int32? {
        switch self {
        case .system(_, let code), .kernel(_, let code): return code
        default: return nil
        }
    }
}

/// Protocol numbers (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, ...).
public enum Netlink {
    public static let messageError: UInt16 = 2, messageDone: UInt16 = 3
    public static let flagRequest: UInt16 = 0x1, flagAcknowledge: UInt16 = 0x4, flagDump: UInt16 = 0x300
    public static let flagReplace: UInt16 = 0x100, flagExclusive: UInt16 = 0x200, flagCreate: UInt16 = 0x400

    public static let newLink: UInt16 = 16, deleteLink: UInt16 = 17, getLink: UInt16 = 18
    public static let newAddress: UInt16 = 20, getAddress: UInt16 = 22
    public static let newRoute: UInt16 = 24, deleteRoute: UInt16 = 25, getRoute: UInt16 = 26
    public static let newNeighbour: UInt16 = 28, getNeighbour: UInt16 = 30
    public static let newQdisc: UInt16 = 36, deleteQdisc: UInt16 = 37, getQdisc: UInt16 = 38
    public static let newFilter: UInt16 = 44, getFilter: UInt16 = 46

    static let linkAddress: UInt16 = 1, linkName: UInt16 = 3, linkMTU: UInt16 = 4
    static let addressAddress: UInt16 = 1, addressLocal: UInt16 = 2
    static let routeDestination: UInt16 = 1, routeOutput: UInt16 = 4, routeGateway: UInt16 = 5
    static let routePreferredSource: UInt16 = 7, routeTable: UInt16 = 15
    static let neighbourDestination: UInt16 = 1, neighbourLinkAddress: UInt16 = 2
    static let interfaceUp: UInt32 = 0x1
}

import AgentProtocol
import CAgentLinux
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Where the agent listens: AF_VSOCK in the guest, a Unix socket when it runs as a host
/// process for tests.
public enum AgentEndpoint: Sendable, Equatable, CustomStringConvertible {
    case vsock(port: UInt32)
    case unix(path: String)

    public var description: String {
        switch self {
        case .vsock(let port): return "vsock port \(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

public struct AgentListenError: Error, CustomStringConvertible {
    public let description: String
}

/// A listening stream socket.
public final class AgentListener: Sendable {
    public let descriptor: Int32
    public let endpoint: AgentEndpoint
    static let addressFamilyVsock: Int32 = 40  // AF_VSOCK
    static let anyCID: UInt32 = 0xFFFF_FFFF

    public init(_ endpoint: AgentEndpoint) throws {
        self.endpoint = endpoint
        switch endpoint {
        case .unix(let path):
            do {
                descriptor = try UnixSocket.listen(path, mode: 0o600, backlog: 16)
            } catch {
                throw AgentListenError(description: "listen on \(path): \(error)")
            }
            return
        case .vsock(let port):
            descriptor = socket(AgentListener.addressFamilyVsock, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { throw AgentListenError(description: "vsock socket: \(String(cString: strerror(errno)))") }
            // struct sockaddr_vm: family u16, reserved u16, port u32, cid u32, flags u8, zero[3].
            var address = [UInt8](repeating: 0, count: 16)
            address[0] = UInt8(AgentListener.addressFamilyVsock)
            withUnsafeBytes(of: port.littleEndian) { for (index, byte) in $0.enumerated() { address[4 + index] = byte } }
            withUnsafeBytes(of: AgentListener.anyCID.littleEndian) { for (index, byte) in $0.enumerated() { address[8 + index] = byte } }
            let result = address.withUnsafeBytes { raw in
                bind(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
            guard result == 0 else { throw AgentListenError(description: "bind vsock port \(port): \(String(cString: strerror(errno)))") }
        }
        guard listen(descriptor, 16) == 0 else { throw AgentListenError(description: "listen: \(String(cString: strerror(errno)))") }
    }

    /// The next connection; nil when the listener was closed.
    public func accept() -> Int32? {
        while true {
            let client = kasa_accept_cloexec(descriptor)
            if client >= 0 { return client }
            if errno == EINTR || errno == ECONNABORTED { continue }
            return nil
        }
    }

    public func close() {
        shutdown(descriptor, Int32(SHUT_RDWR))
        Glibc.close(descriptor)
        if case .unix(let path) = endpoint { unlink(path) }
    }
}

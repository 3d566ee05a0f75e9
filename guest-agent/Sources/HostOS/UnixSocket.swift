#if canImport(Glibc)
import Glibc
#endif

/// Why a Unix socket could not be made or reached, in words for an error message that
/// names the path itself (the reasons do not repeat it).
public struct UnixSocketError: Error, Equatable, CustomStringConvertible {
    /// The errno behind it; 0 for a path that cannot be a socket address at all.
    public let code: Int32
    public let reason: String

    public init(code: Int32, reason: String) {
        self.code = code
        self.reason = reason
    }

    static func errno(_ code: Int32, _ what: String) -> UnixSocketError {
        UnixSocketError(code: code, reason: "\(what): \(String(cString: strerror(code)))")
    }

    public var description: String { reason }
}

/// A filesystem path as a `sockaddr_un`: the one place that builds one (the vsock bridge,
/// kasa-vmm's control socket, the runtime's dialers, the agent's test listener).
public struct UnixSocketAddress: Sendable {
    public let path: String
    private let storage: sockaddr_un

    /// The longest path a Unix socket takes (sun_path less its terminating NUL): 107 on Linux.
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    public init(_ path: String) throws(UnixSocketError) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty else { throw UnixSocketError(code: ENOENT, reason: "the socket path is empty") }
        guard !bytes.contains(0) else { throw UnixSocketError(code: EINVAL, reason: "the socket path contains a NUL byte") }
        guard bytes.count <= UnixSocketAddress.maximumPathLength else {
            throw UnixSocketError(code: ENAMETOOLONG,
                                  reason: "the path is \(bytes.count) bytes, longer than the \(UnixSocketAddress.maximumPathLength) a Unix socket allows")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        self.path = path
        storage = address
    }

    /// Calls `body` with the address as bind(2) and connect(2) take it.
    public func withSocketAddress<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { pointer in
            // Safe: sockaddr_un begins with the sockaddr header; the length passed says how much to read.
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}

/// Unix stream sockets made one way: close-on-exec, the descriptor closed on every failure.
public enum UnixSocket {
    /// A new, unconnected stream socket (`nonBlocking` for event loops).
    public static func stream(nonBlocking: Bool = false) throws(UnixSocketError) -> Int32 {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let descriptor = socket(AF_UNIX, type, 0)
        guard descriptor >= 0 else { throw .errno(errno, "socket") }
        return descriptor
    }

    /// A connected socket to the listener at `path`, blocking unless `nonBlocking` (then a
    /// listener whose backlog is full is a failure, EAGAIN, not a wait).
    public static func connect(_ path: String, nonBlocking: Bool = false) throws(UnixSocketError) -> Int32 {
        let address = try UnixSocketAddress(path)
        let descriptor = try stream(nonBlocking: nonBlocking)
        while address.withSocketAddress({ Glibc.connect(descriptor, $0, $1) }) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(descriptor)
            throw .errno(code, "connect")
        }
        return descriptor
    }

    /// Numbers the temporary names `listen` binds under, so that two listeners made at
    /// once in one process never share one.
    private static let stagingLock = Lock()
    nonisolated(unsafe) private static var stagingCount: UInt64 = 0

    /// A listening socket at `path`, created with `mode` (the permission is set on the
    /// socket before bind, so the file never exists with wider access). A stale socket
    /// file at `path` is replaced; any other file there is an error.
    ///
    /// The path appears only once the socket listens: it is bound under a temporary name
    /// in the same directory and renamed into place after listen(2). Bound straight at
    /// `path`, the file exists between bind and listen, and a client that waits for the
    /// file (the runtime waits for kasa-vmm's control socket that way) and connects in
    /// that window is refused (ECONNREFUSED): seen under load in the stress test.
    public static func listen(_ path: String, mode: mode_t = 0o600, backlog: Int32 = 128,
                              nonBlocking: Bool = false) throws(UnixSocketError) -> Int32 {
        let address = try UnixSocketAddress(path)
        var existing = stat()
        if lstat(path, &existing) == 0, existing.st_mode & S_IFMT != S_IFSOCK {
            throw UnixSocketError(code: EEXIST, reason: "a file that is not a socket is in the way")
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let sequence = stagingLock.withLock { () -> UInt64 in
            stagingCount &+= 1
            return stagingCount
        }
        let staging = directory + "/." + name + ".\(getpid()).\(sequence)"
        let stagingAddress = try? UnixSocketAddress(staging)
        let descriptor = try stream(nonBlocking: nonBlocking)
        func fail(_ what: String, removing file: String?) -> UnixSocketError {
            let code = errno
            close(descriptor)
            if let file { unlink(file) }
            return .errno(code, what)
        }
        // Linux gives the socket file the mode of the socket's inode (less the umask) at bind.
        guard fchmod(descriptor, mode) == 0 else { throw fail("fchmod", removing: nil) }
        if let stagingAddress {
            unlink(staging)
            guard stagingAddress.withSocketAddress({ bind(descriptor, $0, $1) }) == 0 else { throw fail("bind", removing: nil) }
            guard Glibc.listen(descriptor, backlog) == 0 else { throw fail("listen", removing: staging) }
            // rename(2) replaces a stale socket at `path` in one step.
            guard rename(staging, path) == 0 else { throw fail("cannot move the socket into place", removing: staging) }
        } else {
            // A temporary name too long for sun_path: bound in place after all (the window
            // between bind and listen stays open then).
            if lstat(path, &existing) == 0, unlink(path) != 0 { throw fail("cannot remove the stale socket", removing: nil) }
            guard address.withSocketAddress({ bind(descriptor, $0, $1) }) == 0 else { throw fail("bind", removing: nil) }
            guard Glibc.listen(descriptor, backlog) == 0 else { throw fail("listen", removing: path) }
        }
        return descriptor
    }
}

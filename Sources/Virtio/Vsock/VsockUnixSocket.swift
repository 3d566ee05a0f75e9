import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one non-blocking read or write on a host socket.
enum VsockSocketIO: Equatable {
    case bytes(Int)
    case endOfFile
    case wouldBlock
    case failed(Int32)
}

/// A bound, listening Unix socket and the file it created (to unlink only our own file).
struct VsockListeningSocket {
    let fd: Int32
    let path: String
    let device: UInt64
    let inode: UInt64
}

/// Thin wrappers over the socket calls the vsock bridge needs. Every socket is non-blocking
/// and close-on-exec; writes never raise SIGPIPE. The pointer work is confined to this file:
/// each buffer passed to the kernel is a Swift array (or slice) pinned for the call, with the
/// count never larger than its length.
enum VsockUnixSocket {
    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Creates a listening socket at `path` (mode 0600: only the VMM's user connects),
    /// replacing a stale socket file left there. Throws `VsockError.cannotListen` with the reason.
    static func listen(path: String, backlog: Int32 = 128) throws -> VsockListeningSocket {
        let fd: Int32
        do {
            fd = try UnixSocket.listen(path, mode: 0o600, backlog: backlog, nonBlocking: true)
        } catch {
            throw VsockError.cannotListen(path: path, reason: error.reason)
        }
        var created = stat()
        guard stat(path, &created) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw VsockError.cannotListen(path: path, reason: errorText(code))
        }
        return VsockListeningSocket(fd: fd, path: path, device: UInt64(created.st_dev), inode: UInt64(created.st_ino))
    }

    /// Closes the listener and removes its file if the path still names it.
    static func close(_ listener: VsockListeningSocket) {
        Glibc.close(listener.fd)
        var current = stat()
        if lstat(listener.path, &current) == 0, UInt64(current.st_dev) == listener.device, UInt64(current.st_ino) == listener.inode {
            unlink(listener.path)
        }
    }

    static func close(_ fd: Int32) { Glibc.close(fd) }

    enum AcceptResult: Equatable {
        case socket(Int32)
        case wouldBlock
        case failed(Int32)
    }

    static func accept(_ listener: Int32) -> AcceptResult {
        while true {
            // Glibc's module does not export accept4; set the flags right after.
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                return .socket(fd)
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: return .failed(code)
            }
        }
    }

    /// Connects to a listening Unix socket without blocking; a full backlog counts as failure.
    static func connect(path: String) -> Result<Int32, UnixSocketError> {
        Result { () throws(UnixSocketError) in try UnixSocket.connect(path, nonBlocking: true) }
    }

    /// Reads up to `count` bytes (at most the buffer's size) into the front of `buffer`.
    /// With `peek` the bytes stay in the socket.
    static func receive(_ fd: Int32, into buffer: inout [UInt8], count: Int, peek: Bool = false) -> VsockSocketIO {
        let wanted = min(count, buffer.count)
        guard wanted > 0 else { return .bytes(0) }
        while true {
            let result = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, wanted, peek ? Int32(MSG_PEEK) : 0) }
            if result > 0 { return .bytes(result) }
            if result == 0 { return .endOfFile }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: return .failed(code)
            }
        }
    }

    /// Writes as much of `bytes` as the socket takes now.
    static func send(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> VsockSocketIO {
        guard !bytes.isEmpty else { return .bytes(0) }
        while true {
            let result = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if result >= 0 { return .bytes(result) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: return .failed(code)
            }
        }
    }

    /// Whether the peer closed the socket entirely (after a mere half-close it is not).
    static func isHungUp(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: 0, revents: 0)
        return poll(&descriptor, 1, 0) > 0 && descriptor.revents & (Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// Half-closes: the peer reads end-of-file once it has drained what was sent.
    static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }
}


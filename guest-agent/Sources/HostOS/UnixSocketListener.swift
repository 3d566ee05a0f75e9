#if canImport(Glibc)
import Glibc
#endif

/// A blocking listener on a Unix socket file for a control channel (kasa-vmm's
/// `--api-socket`): created with its mode before bind, a stale socket file replaced, and
/// its own file (not one that has replaced it since) removed when it goes away.
public final class UnixSocketListener: @unchecked Sendable {
    public let path: String
    public let descriptor: Int32
    // The file bind created, to remove only our own.
    private let device: UInt64, inode: UInt64

    public init(path: String, mode: mode_t = 0o600, backlog: Int32 = 8) throws(UnixSocketError) {
        let descriptor = try UnixSocket.listen(path, mode: mode, backlog: backlog)
        var created = stat()
        guard stat(path, &created) == 0 else {
            let code = errno
            close(descriptor)
            throw UnixSocketError(code: code, reason: "stat: \(String(cString: strerror(code)))")
        }
        self.path = path
        self.descriptor = descriptor
        device = UInt64(created.st_dev)
        inode = UInt64(created.st_ino)
    }

    deinit {
        close(descriptor)
        var current = stat()
        if lstat(path, &current) == 0, UInt64(current.st_dev) == device, UInt64(current.st_ino) == inode {
            unlink(path)
        }
    }

    /// Waits for the next client; its socket is blocking and close-on-exec. nil when the
    /// listener failed.
    public func accept() -> Int32? {
        while true {
            let client = Glibc.accept(descriptor, nil, nil)
            if client >= 0 {
                // Glibc's module does not export accept4: close-on-exec right after.
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                return client
            }
            if errno == EINTR || errno == ECONNABORTED { continue }
            return nil
        }
    }
}

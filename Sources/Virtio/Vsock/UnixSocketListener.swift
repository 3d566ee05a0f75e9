#if canImport(Glibc)
import Glibc
#endif

/// A listening Unix socket for a host-side control channel (kasa-vmm's `--api-socket`),
/// built on the vsock bridge's socket code: stale socket files are replaced, our own file
/// is removed on close, and the socket is only for the VMM's user (mode 0600).
public final class UnixSocketListener: @unchecked Sendable {
    private let listener: VsockListeningSocket

    public init(path: String) throws {
        listener = try VsockUnixSocket.listen(path: path, backlog: 8)
        chmod(path, 0o600)
    }

    deinit { VsockUnixSocket.close(listener) }

    /// Waits for the next client; its socket is blocking and close-on-exec. nil when the
    /// listener failed.
    public func accept() -> Int32? {
        while true {
            var poller = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, -1)
            if ready < 0 && errno != EINTR { return nil }
            guard ready > 0 else { continue }
            switch VsockUnixSocket.accept(listener.fd) {
            case .socket(let client):
                _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) & ~O_NONBLOCK)
                return client
            case .wouldBlock: continue
            case .failed: return nil
            }
        }
    }
}

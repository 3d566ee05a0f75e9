import CLinux
import Virtio
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A failed host call in the mock driver's helpers, with the reason.
public struct MockDriverError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Host-side plumbing a device backend needs when there is no VMM: Unix sockets for vsock
/// clients, a temporary directory, an eventfd standing in for an irqfd.
public enum HostSupport {
    static func errorText() -> String { String(cString: strerror(errno)) }

    /// A fresh directory from `mkdtemp` (keep `prefix` short: Unix socket paths inside it
    /// must stay under 108 bytes).
    public static func makeTemporaryDirectory(prefix: String = "/tmp/kasa-") throws -> String {
        var template = Array((prefix + "XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw MockDriverError("mkdtemp \(prefix)XXXXXX failed: \(errorText())")
        }
        return String(cString: created)
    }

    /// Connects a stream socket to the Unix socket at `path`; returns the (blocking)
    /// descriptor, which the caller closes.
    public static func connectUnixSocket(path: String) throws -> Int32 {
        do {
            return try UnixSocket.connect(path)
        } catch {
            throw MockDriverError("connect \(path): \(error)")
        }
    }

    /// Makes `fd` non-blocking.
    public static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
}

/// An eventfd that plays the device's interrupt line (an irqfd): `raise` from any thread,
/// poll `fd` for POLLIN, `drain` before looking at the rings.
public final class MockInterruptLine: @unchecked Sendable {
    public let fd: Int32

    public init() throws {
        fd = clinux_eventfd(0)
        guard fd >= 0 else { throw MockDriverError("eventfd: \(HostSupport.errorText())") }
    }

    deinit { close(fd) }

    public func raise() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Clears the line; returns how many times it was raised since the last drain.
    @discardableResult
    public func drain() -> UInt64 {
        var count: UInt64 = 0
        return read(fd, &count, 8) == 8 ? count : 0
    }
}

/// An `EventLoop` running on its own thread (a pthread; no Foundation), as the VMM runs
/// its device event loop.
public final class EventLoopThread: @unchecked Sendable {
    public let loop: EventLoop
    private let thread: JoinableThread

    public init() throws {
        loop = try EventLoop()
        let loop = self.loop
        do {
            thread = try JoinableThread(name: "mock-events") { loop.run() }
        } catch {
            throw MockDriverError("\(error)")
        }
    }

    /// Stops the loop and waits for its thread.
    public func stop() {
        loop.stop()
        thread.join()
    }
}

import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Dialing Unix stream sockets with errno results, and reading a line with a deadline (the
/// hybrid vsock handshake).
public enum UnixStream {
    /// A connected socket, or the errno of the failure.
    public static func connect(_ path: String) -> Result<Int32, Errno> {
        do {
            return .success(try UnixSocket.connect(path))
        } catch {
            return .failure(Errno(error.code == 0 ? EINVAL : error.code))
        }
    }

    /// Reads one byte at a time up to "\n" (nothing after the line is consumed: the ttrpc
    /// stream follows it). nil on EOF, error or timeout.
    static func readLine(_ descriptor: Int32, timeout: Double, limit: Int = 256) -> String? {
        var line: [UInt8] = []
        let deadline = MonotonicClock.now + timeout
        while line.count < limit {
            let left = deadline - MonotonicClock.now
            guard left > 0 else { return nil }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(left * 1000, 60_000)) + 1)
            if ready < 0 { if errno == EINTR { continue }; return nil }
            if ready == 0 { continue }
            var byte: UInt8 = 0
            let count = read(descriptor, &byte, 1)
            if count < 0 { if errno == EINTR { continue }; return nil }
            if count == 0 { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }
}

public struct Errno: Error, Equatable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public var description: String { HostFile.lastErrorDescription(code) }
}

/// Seconds on CLOCK_MONOTONIC (deadlines that wall-clock changes cannot move).
public enum MonotonicClock {
    public static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

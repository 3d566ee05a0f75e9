import HostOS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAgentLinux

/// Small POSIX helpers shared by the launcher (agent side, many threads) and container
/// init (child side, one thread). Internal: nothing here is part of the agent's API.
enum ContainerSys {
    /// strerror for an errno value.
    static func describe(errno code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// `<what>: <strerror(errno)>` for the errno left by the call that just failed.
    static func failure(_ what: String, errno code: Int32 = errno) -> String {
        "\(what): \(describe(errno: code))"
    }

    /// Writes every byte, retrying EINTR and short writes. Returns 0 or the errno.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        DescriptorIO.write(fd, bytes, socket: false)
    }

    @discardableResult
    static func writeAll(_ fd: Int32, _ text: String) -> Int32 {
        writeAll(fd, Array(text.utf8))
    }

    /// Sends every byte on a socket with MSG_NOSIGNAL (a dead peer is EPIPE, never
    /// SIGPIPE). Returns 0 or the errno.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        DescriptorIO.write(fd, bytes, socket: true)
    }

    /// `sendAll` bounded by `timeout` (MSG_DONTWAIT + poll): a peer that never reads
    /// cannot block us. Returns 0, the errno, or ETIMEDOUT.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], timeout: Duration) -> Int32 {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n >= 0 {
                offset += n
                continue
            }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return errno }
            let left = clock.now.duration(to: deadline)
            if left <= .zero { return ETIMEDOUT }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, milliseconds(left))
        }
        return 0
    }

    /// Reads until EOF (or an error other than EINTR), blocking. For the single-threaded
    /// init side, whose peers always close their ends.
    static func readToEnd(_ fd: Int32, limit: Int = 16 << 20) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return result
    }

    enum TimedRead {
        case complete([UInt8])
        case timedOut([UInt8])
    }

    /// Reads until EOF or until `timeout` has passed (poll-bounded, never hangs).
    static func readToEnd(_ fd: Int32, timeout: Duration, limit: Int = 1 << 20) -> TimedRead {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            let left = clock.now.duration(to: deadline)
            if left <= .zero { return .timedOut(result) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, milliseconds(left))
            if rc < 0 {
                if errno == EINTR { continue }
                break
            }
            if rc == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return .complete(result)
    }

    static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1
        return Int32(clamping: max(0, ms))
    }

    /// A pipe with O_CLOEXEC on both ends: (read, write).
    static func makePipe() throws(ContainerSysError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard kasa_pipe_cloexec(&fds) == 0 else { throw ContainerSysError(failure("pipe")) }
        return (fds[0], fds[1])
    }

    /// A connected pair of Unix stream sockets with SOCK_CLOEXEC: (ours, theirs).
    static func makeSocketPair() throws(ContainerSysError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let type = Int32(SOCK_STREAM) | Int32(SOCK_CLOEXEC)
        #endif
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw ContainerSysError(failure("socketpair")) }
        return (fds[0], fds[1])
    }

    static func closeIfOpen(_ fd: inout Int32) {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// waitpid with a bound: polls WNOHANG until `timeout`, then SIGKILLs and reaps.
    /// Returns the wait status, or nil when the pid is not our child (ECHILD: someone
    /// else reaped it).
    static func reap(_ pid: pid_t, timeout: Duration) -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var status: Int32 = 0
        var delay: UInt32 = 200
        while true {
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return status }
            if rc < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if clock.now >= deadline {
                kill(pid, SIGKILL)
                while true {
                    let r = waitpid(pid, &status, 0)
                    if r == pid { return status }
                    if r < 0 && errno == EINTR { continue }
                    return nil
                }
            }
            usleep(delay)
            delay = min(delay * 2, 20_000)
        }
    }

    /// "exit status 3" / "killed by signal 9".
    static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exit status \((status >> 8) & 0xff)" }
        return "killed by signal \(signal)"
    }
}

struct ContainerSysError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Blocking Unix-socket helpers for driving the VMM's vsock bridge from tests, every wait
/// bounded so a broken bridge fails the test instead of hanging it. `close` may be called
/// more than once (an explicit close and a `defer`): only the first closes the descriptor,
/// as a second would close whatever another test opened under that number since.
final class UnixSocketClient: @unchecked Sendable {
    let descriptor: Int32
    private let lock = NSLock()
    private var closed = false  // guarded by lock

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        return address
    }

    static func connect(_ path: String) throws -> UnixSocketClient {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var address = address(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            Glibc.close(descriptor)
            throw Failure(description: "connect to \(path): \(String(cString: strerror(errno)))")
        }
        return UnixSocketClient(descriptor: descriptor)
    }

    /// A listening socket; `accept` waits up to `timeout` seconds for one client.
    static func listen(_ path: String) throws -> UnixSocketClient {
        unlink(path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var address = address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(descriptor, 4) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw Failure(description: "listen on \(path): \(reason)")
        }
        return UnixSocketClient(descriptor: descriptor)
    }

    func accept(timeout: Double) throws -> UnixSocketClient {
        try wait(for: Int16(POLLIN), timeout: timeout, what: "a connection")
        let client = Glibc.accept(descriptor, nil, nil)
        guard client >= 0 else { throw Failure(description: "accept: \(String(cString: strerror(errno)))") }
        return UnixSocketClient(descriptor: client)
    }

    func wait(for events: Int16, timeout: Double, what: String) throws {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        guard poll(&entry, 1, Int32(timeout * 1000)) == 1 else { throw Failure(description: "timed out after \(timeout) s waiting for \(what)") }
    }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT), timeout: 60, what: "room to write")
            let count = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw Failure(description: "write: \(String(cString: strerror(errno)))") }
            offset += count
        }
    }

    /// Up to `limit` bytes, or [] at end of stream.
    func read(limit: Int = 65536, timeout: Double) throws -> [UInt8] {
        try wait(for: Int16(POLLIN), timeout: timeout, what: "data")
        var buffer = [UInt8](repeating: 0, count: limit)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw Failure(description: "read: \(String(cString: strerror(errno)))") }
        return Array(buffer.prefix(count))
    }

    func readLine(timeout: Double) throws -> String {
        var line: [UInt8] = []
        while line.last != UInt8(ascii: "\n") {
            let byte = try read(limit: 1, timeout: timeout)
            guard !byte.isEmpty else { throw Failure(description: "end of stream before a full line (\(line))") }
            line += byte
        }
        return String(decoding: line, as: UTF8.self)
    }

    func readExactly(_ count: Int, timeout: Double) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let chunk = try read(limit: count - bytes.count, timeout: timeout)
            guard !chunk.isEmpty else { throw Failure(description: "end of stream after \(bytes.count) of \(count) bytes") }
            bytes += chunk
        }
        return bytes
    }

    func shutdownWrite() { shutdown(descriptor, Int32(SHUT_WR)) }
    func close() {
        let first = lock.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        if first { Glibc.close(descriptor) }
    }
}

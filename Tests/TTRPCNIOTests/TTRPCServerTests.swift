import AgentProtocol
import Foundation
import Testing
@testable import TTRPCNIO
import HostOS

/// A service for the server tests: "Echo" returns the payload, "Block" waits until
/// "Release" is called (concurrency on one connection), "Fail" answers NOT_FOUND,
/// anything else UNIMPLEMENTED.
actor Gate {
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var open = false

    func wait() async {
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        open = true
        waiters.forEach { $0.resume() }
        waiters.removeAll()
    }
}

struct TestService: TTRPCService {
    let gate = Gate()

    func handle(_ request: TTRPCRequest) async -> TTRPCResponse {
        guard request.service == "test.v1.Test" else {
            return TTRPCResponse(code: .unimplemented, message: "unknown service \(request.service)")
        }
        switch request.method {
        case "Echo":
            var response = TTRPCResponse()
            response.status = TTRPCStatus(code: .ok)
            response.payload = request.payload
            return response
        case "Block":
            await gate.wait()
            var response = TTRPCResponse()
            response.status = TTRPCStatus(code: .ok)
            var unblocked = TTRPCKeyValue()
            unblocked.key = "unblocked"
            response.payload = (try? unblocked.serializedData()) ?? Data()
            return response
        case "Release":
            await gate.release()
            return TTRPCResponse(code: .ok, message: "")
        case "Fail":
            return TTRPCResponse(code: .notFound, message: "no such thing")
        default:
            return TTRPCResponse(code: .unimplemented, message: "unknown method \(request.method)")
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct TTRPCServerTests {
    /// Serves TestService on a fresh socket and runs `body` (blocking client code) on a
    /// thread of its own: blocking a task would starve the cooperative pool that the
    /// server's request tasks need (two threads on a two-core host).
    static func withServer(_ body: @escaping @Sendable (String) throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "ttrpc-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/server.sock"
        let server = try await TTRPCUnixServer.bind(path: path, service: TestService(), log: { _ in })
        let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: Result { try body(path) }) }
        }
        await server.close()
        try result.get()
    }

    static func connect(_ path: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { close(descriptor); throw TTRPCCallError(code: .unavailable, message: "connect \(path)") }
        return descriptor
    }

    static func raw(_ service: String, _ method: String, _ payload: [UInt8]) throws -> [UInt8] {
        var request = TTRPCRequest()
        request.service = service
        request.method = method
        request.payload = Data(payload)
        return try request.serializedBytes()
    }

    @Test func answersRequestsAndErrors() async throws {
        try await Self.withServer { path in
            let client = TTRPCClient(descriptor: try Self.connect(path))
            defer { client.close() }
            var message = TTRPCKeyValue()
            message.key = "k"
            message.value = "v"
            let echoed = try client.call(service: "test.v1.Test", method: "Echo", request: message, responseType: TTRPCKeyValue.self, timeout: 5)
            #expect(echoed == message)
            let failure = #expect(throws: TTRPCCallError.self) {
                try client.call(service: "test.v1.Test", method: "Fail", request: message, responseType: TTRPCKeyValue.self, timeout: 5)
            }
            #expect(failure == TTRPCCallError(code: .notFound, message: "no such thing"))
            let unknown = #expect(throws: TTRPCCallError.self) {
                try client.call(service: "other.Service", method: "X", request: message, responseType: TTRPCKeyValue.self, timeout: 5)
            }
            #expect(unknown?.code == .unimplemented)
        }
    }

    /// A call that blocks does not hold up the next one on the same connection.
    @Test func requestsOnOneConnectionRunConcurrently() async throws {
        try await Self.withServer { path in
            let client = TTRPCClient(descriptor: try Self.connect(path))
            defer { client.close() }
            let blocked = Thread.detachNewThreadWithResult {
                (try? client.call(service: "test.v1.Test", method: "Block", request: TTRPCKeyValue(), responseType: TTRPCKeyValue.self, timeout: 10))
                    .flatMap { $0.key == "unblocked" ? $0 : nil }
            }
            Thread.sleep(forTimeInterval: 0.2)
            _ = try client.call(service: "test.v1.Test", method: "Release", request: TTRPCKeyValue(), responseType: TTRPCKeyValue.self, timeout: 5)
            #expect(blocked.wait(timeout: 10) == true)
        }
    }

    /// Bytes written by hand from the ttrpc framing rules: an oversized frame is refused on
    /// its stream and skipped; garbage in a request envelope gets INVALID_ARGUMENT; the
    /// connection keeps serving.
    @Test func badFramesAreAnsweredAndTheConnectionSurvives() async throws {
        try await Self.withServer { path in
            let descriptor = try Self.connect(path)
            defer { close(descriptor) }
            var bytes: [UInt8] = []
            // Stream 1: a 5 MiB request (limit 4 MiB).
            let big = 5 << 20
            bytes += [UInt8(big >> 24), UInt8((big >> 16) & 0xff), UInt8((big >> 8) & 0xff), UInt8(big & 0xff), 0, 0, 0, 1, 1, 0]
            bytes += [UInt8](repeating: 0x41, count: big)
            // Stream 3: not a Request message (a field 1 varint of an invalid wire shape).
            let garbage: [UInt8] = [0xff, 0xff, 0xff]
            bytes += [0, 0, 0, UInt8(garbage.count), 0, 0, 0, 3, 1, 0] + garbage
            // Stream 5: a good Echo.
            let echo = try Self.raw("test.v1.Test", "Echo", [0x0a, 0x01, 0x6b])
            bytes += [0, 0, 0, UInt8(echo.count), 0, 0, 0, 5, 1, 0] + echo
            #expect(DescriptorIO.writeAll(descriptor, bytes))

            var decoder = TTRPCFrameDecoder()
            var responses: [UInt32: TTRPCResponse] = [:]
            let deadline = Date().addingTimeInterval(10)
            while responses.count < 3 && Date() < deadline {
                let chunk = DescriptorIO.readSome(descriptor)
                if chunk.isEmpty { break }
                for frame in try decoder.feed(chunk) where frame.type == .response {
                    responses[frame.streamID] = try TTRPCResponse(serializedBytes: frame.payload)
                }
            }
            #expect(responses[1]?.status.statusCode == .resourceExhausted)
            #expect(responses[3]?.status.statusCode == .invalidArgument)
            #expect(responses[5]?.status.statusCode == .ok)
            #expect(responses[5].map { Array($0.payload) } == [0x0a, 0x01, 0x6b])
        }
    }
}

extension Thread {
    /// Runs `body` on a new thread; the result says whether it returned non-nil.
    static func detachNewThreadWithResult<T>(_ body: @escaping @Sendable () -> T?) -> ThreadResult {
        let result = ThreadResult()
        Thread.detachNewThread { result.finish(body() != nil) }
        return result
    }
}

final class ThreadResult: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Bool?

    func finish(_ success: Bool) {
        condition.lock()
        value = success
        condition.broadcast()
        condition.unlock()
    }

    func wait(timeout: Double) -> Bool? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while value == nil && condition.wait(until: deadline) {}
        return value
    }
}

import SwiftProtobuf
import HostOS
#if canImport(Glibc)
import Glibc
#endif

public struct TTRPCCallError: Error, Equatable, CustomStringConvertible, Sendable {
    public let code: TTRPCStatusCode
    public let message: String

    public init(code: TTRPCStatusCode, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// A ttrpc client over a connected stream socket. Calls may run concurrently from several
/// threads: each gets its own stream id, and one reader thread hands responses back.
public final class TTRPCClient: @unchecked Sendable {
    public let descriptor: Int32
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var streamIDs = TTRPCClientStreamIDs()
    private var responses: [UInt32: TTRPCResponse] = [:]
    private var waiting: Set<UInt32> = []
    private var closed = false
    private let writeLock = Monitor()

    /// Takes ownership of `descriptor` and starts the reader thread.
    public init(descriptor: Int32) {
        self.descriptor = descriptor
        DetachedThread.start { [self] in readLoop() }
    }

    public func close() {
        monitor.update { closed = true }
        shutdown(descriptor, Int32(SHUT_RDWR))
    }

    deinit { Glibc.close(descriptor) }

    private func readLoop() {
        var decoder = TTRPCFrameDecoder()
        while true {
            let bytes = DescriptorIO.readSome(descriptor)
            if bytes.isEmpty { break }
            guard let frames = try? decoder.feed(bytes) else { break }
            for frame in frames where frame.type == .response {
                guard let response = try? TTRPCResponse(serializedBytes: frame.payload) else { continue }
                monitor.update {
                    if waiting.contains(frame.streamID) { responses[frame.streamID] = response }
                }
            }
        }
        monitor.update { closed = true }
    }

    /// Sends one request and waits for its response (at most `timeout` seconds).
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, request: Request, responseType: Response.Type, timeout: Double = 60
    ) throws -> Response {
        let streamID: UInt32 = try monitor.withLock {
            guard !closed else { throw TTRPCCallError(code: .unavailable, message: "connection closed") }
            let id = try streamIDs.next()
            waiting.insert(id)
            return id
        }
        defer { monitor.withLock { waiting.remove(streamID); _ = responses.removeValue(forKey: streamID) } }
        let frame = try TTRPCFrame(streamID: streamID, request: TTRPCRequest(service: service, method: method, message: request,
                                                                           timeoutNanoseconds: Int64(timeout * 1e9)))
        let bytes = try TTRPCFrameEncoder().encode(frame)
        let sent = writeLock.withLock { DescriptorIO.writeAll(descriptor, bytes) }
        guard sent else { throw TTRPCCallError(code: .unavailable, message: "connection closed while sending") }
        var response: TTRPCResponse?
        let arrived = monitor.wait(until: {
            response = responses[streamID]
            return response != nil || closed
        }, timeout: timeout)
        guard let response else {
            throw TTRPCCallError(code: arrived ? .unavailable : .deadlineExceeded,
                                 message: arrived ? "connection closed before the response" : "no response within \(timeout) s")
        }
        guard response.status.statusCode == .ok else {
            throw TTRPCCallError(code: response.status.statusCode, message: response.status.message)
        }
        return try Response(serializedBytes: response.payload)
    }
}

/// Typed calls of AgentService over a ttrpc connection.
public struct AgentClient: Sendable {
    public let connection: TTRPCClient

    public init(connection: TTRPCClient) { self.connection = connection }

    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: AgentServiceMethod, _ request: Request, returning: Response.Type, timeout: Double = 60
    ) throws -> Response {
        try connection.call(service: AgentService.name, method: method.rawValue, request: request,
                            responseType: Response.self, timeout: timeout)
    }

    @discardableResult
    public func call<Request: SwiftProtobuf.Message>(_ method: AgentServiceMethod, _ request: Request, timeout: Double = 60) throws -> AgentEmpty {
        try call(method, request, returning: AgentEmpty.self, timeout: timeout)
    }
}

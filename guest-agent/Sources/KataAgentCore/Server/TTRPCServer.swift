import AgentProtocol
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// Answers one ttrpc request: the service handler's whole contract with the transport.
public protocol TTRPCRequestHandler: Sendable {
    func handle(_ request: TTRPCRequest) -> TTRPCResponse
}

/// Serves ttrpc on every connection a listener accepts. Each request runs on its own
/// thread, so a blocking call (WaitProcess, ReadStdout) never holds up the others on the
/// same connection (containerd's `ctr run` waits before it starts); at most
/// `maximumRequestsInFlight` per connection, beyond which a request is answered
/// RESOURCE_EXHAUSTED at once. A malformed or oversized frame is answered or skipped; the
/// connection and the agent keep serving.
///
/// A connection's descriptor is closed only when its reader has stopped and its last
/// request has replied: closing it earlier would let a late reply land in whatever file
/// or socket reuses that number. When the peer goes, the socket is shut down at once, so
/// replies still on their way fail instead of waiting.
public final class TTRPCServer: Sendable {
    let handler: any TTRPCRequestHandler
    let log: @Sendable (String) -> Void
    let maximumRequestsInFlight: Int

    public init(handler: any TTRPCRequestHandler, maximumRequestsInFlight: Int = 256,
                log: @escaping @Sendable (String) -> Void) {
        self.handler = handler
        self.maximumRequestsInFlight = maximumRequestsInFlight
        self.log = log
    }

    /// Accepts connections until the listener closes.
    public func serve(_ listener: AgentListener) {
        while let connection = listener.accept() {
            DetachedThread.start { [self] in serveConnection(connection) }
        }
    }

    /// One connection's descriptor, shared by its reader and its request threads.
    final class Connection: @unchecked Sendable {
        let descriptor: Int32
        private let writing = Lock()  // one frame at a time; may block on a full socket
        private let monitor = Monitor()
        // Guarded by `monitor`.
        private var inFlight = 0
        private var reading = true

        init(_ descriptor: Int32) { self.descriptor = descriptor }

        /// Counts a request in, unless `limit` are running.
        func admit(limit: Int) -> Bool {
            monitor.withLock {
                guard inFlight < limit else { return false }
                inFlight += 1
                return true
            }
        }

        /// Writes a whole frame; frames of concurrent replies never interleave.
        func write(_ bytes: [UInt8]) {
            writing.withLock { _ = DescriptorIO.writeAll(descriptor, bytes) }
        }

        func requestFinished() { release { inFlight -= 1 } }

        /// The peer is gone or the stream is unusable: no more reads, replies fail fast.
        func readerStopped() {
            shutdown(descriptor, Int32(SHUT_RDWR))
            release { reading = false }
        }

        /// Applies `change`, then closes the descriptor if nothing can use it any more.
        private func release(_ change: () -> Void) {
            let last = monitor.withLock { () -> Bool in
                change()
                return !reading && inFlight == 0
            }
            if last { close(descriptor) }
        }
    }

    public func serveConnection(_ descriptor: Int32) {
        let connection = Connection(descriptor)
        var decoder = TTRPCFrameDecoder()
        defer { connection.readerStopped() }
        while true {
            let bytes = DescriptorIO.readSome(descriptor)
            if bytes.isEmpty { return }
            decoder.append(bytes)
            while true {
                let frame: TTRPCFrame?
                do {
                    frame = try decoder.nextFrame()
                } catch let TTRPCFrameError.frameTooLarge(streamID, length, limit) {
                    log("ttrpc: refused a \(length)-byte frame on stream \(streamID) (limit \(limit))")
                    reply(TTRPCResponse(code: .resourceExhausted, message: "frame of \(length) bytes exceeds the \(limit)-byte limit"),
                          streamID: streamID, on: connection)
                    continue
                } catch {
                    log("ttrpc: dropping connection: \(error)")
                    return
                }
                guard let frame else { break }
                guard frame.type == .request else { continue }  // data frames: no streaming RPCs here
                guard connection.admit(limit: maximumRequestsInFlight) else {
                    reply(TTRPCResponse(code: .resourceExhausted,
                                        message: "more than \(maximumRequestsInFlight) requests in flight on this connection"),
                          streamID: frame.streamID, on: connection)
                    continue
                }
                let handler = self.handler
                DetachedThread.start { [self] in
                    defer { connection.requestFinished() }
                    let response: TTRPCResponse
                    if let request = try? TTRPCRequest(serializedBytes: frame.payload) {
                        response = handler.handle(request)
                    } else {
                        response = TTRPCResponse(code: .invalidArgument, message: "the request envelope is not a valid ttrpc Request")
                    }
                    reply(response, streamID: frame.streamID, on: connection)
                }
            }
        }
    }

    private func reply(_ response: TTRPCResponse, streamID: UInt32, on connection: Connection) {
        var response = response
        var bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: response))) ?? []
        if bytes.isEmpty {
            response = TTRPCResponse(code: .resourceExhausted, message: "response larger than the frame limit")
            bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: response))) ?? []
        }
        connection.write(bytes)
    }
}

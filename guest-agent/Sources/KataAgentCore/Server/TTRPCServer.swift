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
/// same connection (containerd's `ctr run` waits before it starts). A malformed or
/// oversized frame is answered or skipped; the connection and the agent keep serving.
public final class TTRPCServer: Sendable {
    let handler: any TTRPCRequestHandler
    let log: @Sendable (String) -> Void

    public init(handler: any TTRPCRequestHandler, log: @escaping @Sendable (String) -> Void) {
        self.handler = handler
        self.log = log
    }

    /// Accepts connections until the listener closes.
    public func serve(_ listener: AgentListener) {
        while let connection = listener.accept() {
            DetachedThread.start { [self] in serveConnection(connection) }
        }
    }

    public func serveConnection(_ descriptor: Int32) {
        let writer = Monitor()
        var decoder = TTRPCFrameDecoder()
        defer { close(descriptor) }
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
                          streamID: streamID, descriptor: descriptor, writer: writer)
                    continue
                } catch {
                    log("ttrpc: dropping connection: \(error)")
                    return
                }
                guard let frame else { break }
                guard frame.type == .request else { continue }  // data frames: no streaming RPCs here
                let handler = self.handler
                DetachedThread.start { [self] in
                    let response: TTRPCResponse
                    if let request = try? TTRPCRequest(serializedBytes: frame.payload) {
                        response = handler.handle(request)
                    } else {
                        response = TTRPCResponse(code: .invalidArgument, message: "the request envelope is not a valid ttrpc Request")
                    }
                    reply(response, streamID: frame.streamID, descriptor: descriptor, writer: writer)
                }
            }
        }
    }

    private func reply(_ response: TTRPCResponse, streamID: UInt32, descriptor: Int32, writer: Monitor) {
        var response = response
        var bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: response))) ?? []
        if bytes.isEmpty {
            response = TTRPCResponse(code: .resourceExhausted, message: "response larger than the frame limit")
            bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: response))) ?? []
        }
        writer.withLock { _ = DescriptorIO.writeAll(descriptor, bytes) }
    }
}

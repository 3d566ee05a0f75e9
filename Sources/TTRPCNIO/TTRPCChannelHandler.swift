import AgentProtocol
import NIOCore

/// One ttrpc connection in a NIO pipeline: bytes in, frames decoded with AgentProtocol's
/// codec (the same one the agent and the runtime use), each request answered by its own
/// task, responses written back on the channel in whatever order they finish.
///
/// An oversized frame (over 4 MiB) is answered RESOURCE_EXHAUSTED on its stream and its
/// payload skipped; a request that does not decode is answered INVALID_ARGUMENT; data
/// frames (streaming RPCs, which the services here do not have) are ignored. None of these
/// closes the connection.
final class TTRPCChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: any TTRPCService
    private let log: @Sendable (String) -> Void
    private var decoder = TTRPCFrameDecoder()

    init(service: any TTRPCService, log: @escaping @Sendable (String) -> Void) {
        self.service = service
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        decoder.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        let channel = context.channel
        while true {
            let frame: TTRPCFrame?
            do {
                frame = try decoder.nextFrame()
            } catch let TTRPCFrameError.frameTooLarge(streamID, length, limit) {
                log("ttrpc: refused a \(length)-byte frame on stream \(streamID) (limit \(limit))")
                Self.send(TTRPCResponse(code: .resourceExhausted, message: "frame of \(length) bytes exceeds the \(limit)-byte limit"),
                          streamID: streamID, on: channel)
                continue
            } catch {
                log("ttrpc: closing the connection: \(error)")
                context.close(promise: nil)
                return
            }
            guard let frame else { return }
            if frame.type == .request {
                Self.dispatch(frame, to: service, on: channel)
            }
        }
    }

    /// Answers one request frame on a task of its own.
    private static func dispatch(_ frame: TTRPCFrame, to service: any TTRPCService, on channel: any Channel) {
        let streamID = frame.streamID, payload = frame.payload
        Task {
            let response: TTRPCResponse
            if let request = try? TTRPCRequest(serializedBytes: payload) {
                response = await service.handle(request)
            } else {
                response = TTRPCResponse(code: .invalidArgument, message: "the request envelope is not a valid ttrpc Request")
            }
            send(response, streamID: streamID, on: channel)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log("ttrpc: connection error: \(error)")
        context.close(promise: nil)
    }

    /// Writes a response frame; one that would exceed the frame limit is replaced by a
    /// RESOURCE_EXHAUSTED status, so the caller is never left waiting.
    static func send(_ response: TTRPCResponse, streamID: UInt32, on channel: any Channel) {
        var bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: response))) ?? []
        if bytes.isEmpty {
            let refusal = TTRPCResponse(code: .resourceExhausted, message: "response larger than the frame limit")
            bytes = (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, response: refusal))) ?? []
        }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(buffer, promise: nil)
    }
}

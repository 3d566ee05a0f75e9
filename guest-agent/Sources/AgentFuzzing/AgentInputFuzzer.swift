import AgentProtocol
import Foundation
import KataAgentCore

/// What the agent decodes from bytes a host (or anything reaching its vsock port) sends:
/// ttrpc frames, the Request envelope, each method's request message, and the OCI JSON
/// inside CreateContainer and ExecProcess. `check` runs one input through all of them and
/// traps (precondition) when an invariant breaks; decoding errors are expected and fine.
///
/// Driven by libFuzzer (`agent-fuzz`, built by fuzz/run-fuzz.sh) and, over the seed
/// corpus, by the unit tests.
public enum AgentInputFuzzer {
    /// Small, so that the fuzzer reaches "frame too large" and skipping quickly.
    public static let maxPayloadLength = 4096

    public static func check(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let stream = Array(input.dropFirst())
        // The first byte picks how the stream is cut into reads: the decoder must give
        // the same frames and errors whatever the cut.
        let whole = decode(stream, chunkSize: max(stream.count, 1))
        let cut = decode(stream, chunkSize: Int(first % 17) + 1)
        precondition(whole == cut, "frames depend on how the stream was read: \(whole) vs \(cut)")
        for case .frame(let frame) in whole {
            precondition(frame.payload.count <= maxPayloadLength, "a frame over the limit was handed out")
            if frame.type == .request { checkRequest(frame.payload) }
        }
        // The same bytes as a bare OCI document and as an exec's process.
        _ = try? OCISpec.parse(stream)
        _ = try? OCISpec.Process.parse(stream)
    }

    enum Event: Equatable, CustomStringConvertible {
        case frame(TTRPCFrame)
        case error(TTRPCFrameError)
        var description: String {
            switch self {
            case .frame(let frame): "frame(stream \(frame.streamID), \(frame.type), \(frame.payload.count) bytes)"
            case .error(let error): "error(\(error))"
            }
        }
    }

    static func decode(_ stream: [UInt8], chunkSize: Int) -> [Event] {
        var decoder = TTRPCFrameDecoder(maxPayloadLength: maxPayloadLength)
        var events: [Event] = []
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + chunkSize)
            decoder.append(stream[offset..<end])
            offset = end
            while true {
                do {
                    guard let frame = try decoder.nextFrame() else { break }
                    events.append(.frame(frame))
                } catch {
                    events.append(.error(error))
                }
            }
        }
        return events
    }

    static func checkRequest(_ payload: [UInt8]) {
        guard let request = try? TTRPCRequest(serializedBytes: payload) else { return }
        guard request.service == AgentService.name, let method = AgentServiceMethod(rawValue: request.method) else { return }
        guard let message = try? method.requestType.init(serializedBytes: request.payload) else { return }
        // A decoded message re-encodes and decodes to itself.
        if let bytes: [UInt8] = try? message.serializedBytes() {
            let again = try? method.requestType.init(serializedBytes: bytes)
            precondition(again.map { $0.isEqualTo(message: message) } == true, "\(method) does not survive a round trip")
        }
        if let create = message as? AgentCreateContainerRequest { _ = try? OCISpec.parse([UInt8](create.ociSpecJson)) }
        if let exec = message as? AgentExecProcessRequest { _ = try? OCISpec.Process.parse([UInt8](exec.processJson)) }
    }

    /// Inputs worth starting from: a well-formed request of every method (CreateContainer
    /// with a real OCI spec), two frames in one stream, an oversized frame followed by a
    /// good one, and a truncated header. Written by `agent-fuzz --write-seeds DIR`.
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        func frame(_ method: AgentServiceMethod, _ message: any SwiftProtobuf.Message, stream: UInt32 = 1) -> [UInt8] {
            var request = TTRPCRequest()
            request.service = AgentService.name
            request.method = method.rawValue
            request.payload = (try? message.serializedData()) ?? Data()
            let payload: [UInt8] = (try? request.serializedBytes()) ?? []
            return (try? TTRPCFrameEncoder().encode(TTRPCFrame(streamID: stream, type: .request, payload: payload))) ?? []
        }
        var create = AgentCreateContainerRequest()
        create.containerID = "c1"
        create.ociSpecJson = Data(#"{"ociVersion":"1.1.0","process":{"args":["sh","-c","echo hi"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}},"root":{"path":"rootfs"},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"linux":{"resources":{"memory":{"limit":33554432}}}}"#.utf8)
        var exec = AgentExecProcessRequest()
        exec.containerID = "c1"
        exec.execID = "e1"
        exec.processJson = Data(#"{"args":["ls"],"cwd":"/","user":{"uid":0,"gid":0}}"#.utf8)
        var copy = AgentCopyFileRequest()
        copy.path = "/run/kasa-agent/shared/c1/3-hosts"
        copy.fileMode = 0o100644
        copy.dirMode = 0o755
        copy.data = Data("127.0.0.1 localhost\n".utf8)
        copy.fileSize = Int64(copy.data.count)
        var seeds: [(String, [UInt8])] = []
        for method in AgentServiceMethod.allCases {
            let message: any SwiftProtobuf.Message = switch method {
            case .createContainer: create
            case .execProcess: exec
            case .copyFile: copy
            default: method.requestType.init()
            }
            seeds.append(("request-\(method.rawValue)", [5] + frame(method, message)))
        }
        let oversized: [UInt8] = [0, 0, 0x20, 0, 0, 0, 0, 3, 1, 0] + [UInt8](repeating: 7, count: 100)
        seeds.append(("two-frames", [3] + frame(.check, AgentCheckRequest(), stream: 1) + frame(.createContainer, create, stream: 3)))
        seeds.append(("oversized-then-good", [1] + oversized + frame(.check, AgentCheckRequest(), stream: 5)))
        seeds.append(("truncated-header", [2, 0, 0, 0]))
        return seeds
    }
}

import SwiftProtobuf

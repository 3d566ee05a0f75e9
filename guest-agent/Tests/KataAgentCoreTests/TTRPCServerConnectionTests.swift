import AgentProtocol
import Foundation
import HostOS
@testable import KataAgentCore
import Testing

/// The agent's ttrpc server and the lifetime of a connection's descriptor: a reply that
/// comes after the peer left must never be written into whatever reuses the number.
@Suite struct TTRPCServerConnectionTests {
    /// Holds every request until released; counts what it answered.
    final class GatedHandler: TTRPCRequestHandler, @unchecked Sendable {
        let monitor = Monitor()
        var released = false
        var started = 0
        var answered = 0
        func handle(_ request: TTRPCRequest) -> TTRPCResponse {
            monitor.update { started += 1 }
            _ = monitor.wait(until: { released }, timeout: 30)
            monitor.update { answered += 1 }
            return TTRPCResponse(code: .ok, message: "late reply")
        }
    }

    static func requestFrame(streamID: UInt32) throws -> [UInt8] {
        var request = TTRPCRequest()
        request.service = "test.Service"
        request.method = "Hold"
        return try TTRPCFrameEncoder().encode(TTRPCFrame(streamID: streamID, request: request))
    }

    @Test func aLateReplyNeverReachesTheNextOwnerOfTheDescriptor() throws {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let (client, served) = (pair[0], pair[1])
        // The served socket's identity: once closed, its number may at once belong to a file
        // another test opened, so "closed" is checked as "no longer this socket".
        var original = stat()
        try #require(fstat(served, &original) == 0)
        func stillTheSocket() -> Bool {
            var now = stat()
            return fstat(served, &now) == 0 && now.st_dev == original.st_dev && now.st_ino == original.st_ino
        }
        let handler = GatedHandler()
        let server = TTRPCServer(handler: handler, log: { _ in })
        let readerDone = Monitor()
        nonisolated(unsafe) var readerStopped = false
        DetachedThread.start {
            server.serveConnection(served)
            readerDone.update { readerStopped = true }
        }
        #expect(DescriptorIO.writeAll(client, try Self.requestFrame(streamID: 1)))
        #expect(handler.monitor.wait(until: { handler.started == 1 }, timeout: 10))
        // The client leaves while its request is still being handled.
        close(client)
        #expect(readerDone.wait(until: { readerStopped }, timeout: 10))
        // The server's number must still be its own: files opened now (the lowest free
        // numbers, the client's among them) must all get other ones.
        let directory = FileManager.default.temporaryDirectory.appending(path: "kasa-ttrpc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var files: [Int32] = []
        defer { files.forEach { close($0) } }
        for index in 0..<8 {
            let file = open(directory + "/\(index)", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
            try #require(file >= 0)
            files.append(file)
        }
        #expect(!files.contains(served), "the connection's descriptor was closed while a request still held it")
        handler.monitor.update { handler.released = true }
        #expect(handler.monitor.wait(until: { handler.answered == 1 }, timeout: 10))
        // Give the reply its moment, then look: nothing of it is in any of the files.
        usleep(100_000)
        for file in files {
            var info = stat()
            #expect(fstat(file, &info) == 0 && info.st_size == 0, "the late reply landed in file descriptor \(file)")
        }
        // And once the last request is done, the descriptor is closed.
        var polls = 0
        while stillTheSocket() && polls < 100 { usleep(20_000); polls += 1 }
        #expect(!stillTheSocket(), "the descriptor stayed open after its last reply")
    }

    @Test func requestsBeyondTheLimitAreRefusedAtOnce() throws {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let (client, served) = (pair[0], pair[1])
        defer { close(client) }
        let handler = GatedHandler()
        let server = TTRPCServer(handler: handler, maximumRequestsInFlight: 2, log: { _ in })
        DetachedThread.start { server.serveConnection(served) }
        for stream in [1, 3, 5] as [UInt32] {
            #expect(DescriptorIO.writeAll(client, try Self.requestFrame(streamID: stream)))
        }
        // The third is answered while the first two still wait.
        var decoder = TTRPCFrameDecoder()
        var frame: TTRPCFrame?
        while frame == nil {
            let bytes = DescriptorIO.readSome(client)
            try #require(!bytes.isEmpty)
            decoder.append(bytes)
            frame = try decoder.nextFrame()
        }
        let refused = try #require(frame)
        #expect(refused.streamID == 5)
        let response = try TTRPCResponse(serializedBytes: refused.payload)
        #expect(response.status.code == TTRPCStatusCode.resourceExhausted.rawValue, "\(response)")
        // The two admitted requests reach the handler on their own threads (maybe after
        // the refusal went out); the refused one never does.
        #expect(handler.monitor.wait(until: { handler.started >= 2 }, timeout: 10))
        #expect(handler.monitor.withLock { handler.started } == 2)
        handler.monitor.update { handler.released = true }
    }
}

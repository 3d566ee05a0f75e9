import Foundation
import SwiftProtobuf
import Testing
import AgentProtocol

// Protobuf vectors computed by hand: tag = field number << 3 | wire type
// (0 varint, 2 length-delimited), then varint or length + bytes.

@Test func requestEncodesToHandComputedBytes() throws {
    var request = TTRPCRequest()
    request.service = "s"
    request.method = "m"
    request.payload = Data([0x01, 0x02])
    let expected: [UInt8] = [0x0A, 0x01, 0x73, 0x12, 0x01, 0x6D, 0x1A, 0x02, 0x01, 0x02]
    #expect(try request.serializedBytes() == expected)
    #expect(try TTRPCRequest(serializedBytes: expected) == request)
}

@Test func requestWithTimeoutAndMetadataEncodesToHandComputedBytes() throws {
    let request = try TTRPCRequest(
        service: "a.B", method: "C", message: AgentStartContainerRequest.with { $0.containerID = "x" },
        timeoutNanoseconds: 300, metadata: [(key: "k", value: "v")]
    )
    let expected: [UInt8] = [
        0x0A, 0x03, 0x61, 0x2E, 0x42,  // service "a.B"
        0x12, 0x01, 0x43,  // method "C"
        0x1A, 0x03, 0x0A, 0x01, 0x78,  // payload: StartContainerRequest{container_id "x"}
        0x20, 0xAC, 0x02,  // timeout_nano 300
        0x2A, 0x06, 0x0A, 0x01, 0x6B, 0x12, 0x01, 0x76,  // metadata {key "k", value "v"}
    ]
    #expect(try request.serializedBytes() == expected)
    let decoded = try TTRPCRequest(serializedBytes: expected)
    #expect(decoded == request)
    #expect(decoded.metadata.map { [$0.key, $0.value] } == [["k", "v"]])
    #expect(try AgentStartContainerRequest(serializedBytes: decoded.payload).containerID == "x")
}

@Test func responseEncodesToHandComputedBytes() throws {
    let failed = TTRPCResponse(code: .unimplemented, message: "x")
    let expected: [UInt8] = [0x0A, 0x05, 0x08, 0x0C, 0x12, 0x01, 0x78]
    #expect(try failed.serializedBytes() == expected)
    #expect(try TTRPCResponse(serializedBytes: expected).status.statusCode == .unimplemented)

    let ok = try TTRPCResponse(message: AgentWriteStreamResponse.with { $0.len = 5 })
    // status {} (present, all defaults) then payload {len 5}.
    #expect(try ok.serializedBytes() == [0x0A, 0x00, 0x12, 0x02, 0x08, 0x05])
    #expect(ok.status.statusCode == .ok)
}

@Test func statusDetailsCarryAnyMessages() throws {
    var status = TTRPCStatus(code: .notFound, message: "no such container")
    status.details = [try Google_Protobuf_Any(message: AgentOOMEvent.with { $0.containerID = "c1" })]
    let bytes: [UInt8] = try status.serializedBytes()
    let decoded = try TTRPCStatus(serializedBytes: bytes)
    // (An Any holding a packed message and one holding its bytes do not compare equal
    // in swift-protobuf, so compare fields and bytes.)
    #expect(decoded.statusCode == .notFound && decoded.message == "no such container")
    #expect(try decoded.serializedBytes() == bytes)
    #expect(decoded.details.first?.typeURL == "type.googleapis.com/kasa.agent.v1.OOMEvent")
    #expect(try AgentOOMEvent(unpackingAny: decoded.details[0]).containerID == "c1")
}

@Test func requestFrameOnTheWireIsHeaderPlusEnvelope() throws {
    let request = try TTRPCRequest(service: AgentService.name, method: AgentServiceMethod.check.rawValue, message: AgentCheckRequest())
    let frame = try TTRPCFrame(streamID: 1, request: request)
    let bytes = try TTRPCFrameEncoder().encode(frame)
    let envelope: [UInt8] = try request.serializedBytes()
    // "kasa.agent.v1.AgentService" is 26 bytes, "Check" 5, empty payload is omitted.
    #expect(envelope.count == 2 + 26 + 2 + 5)
    #expect(Array(bytes.prefix(10)) == [0, 0, 0, UInt8(envelope.count), 0, 0, 0, 1, 1, 0])
    #expect(Array(bytes.dropFirst(10)) == envelope)

    var decoder = TTRPCFrameDecoder()
    let received = try decoder.feed(bytes)
    #expect(received.count == 1)
    let decoded = try TTRPCRequest(serializedBytes: received[0].payload)
    #expect(AgentServiceMethod(service: decoded.service, method: decoded.method) == .check)
}

@Test func agentMessageEncodesToHandComputedBytes() throws {
    let signal = AgentSignalProcessRequest.with {
        $0.containerID = "c"
        $0.signal = 9
    }
    #expect(try signal.serializedBytes() == [0x0A, 0x01, 0x63, 0x18, 0x09] as [UInt8])

    let resize = AgentTtyWinResizeRequest.with {
        $0.containerID = "c"
        $0.execID = "e"
        $0.rows = 24
        $0.columns = 80
    }
    #expect(try resize.serializedBytes() == [0x0A, 0x01, 0x63, 0x12, 0x01, 0x65, 0x18, 0x18, 0x20, 0x50] as [UInt8])
}

@Test func createContainerRequestRoundTrips() throws {
    let request = AgentCreateContainerRequest.with {
        $0.containerID = "ctr"
        $0.execID = "ctr"
        $0.ociSpecJson = Data(#"{"ociVersion":"1.0.2","process":{"args":["sh"]}}"#.utf8)
        $0.rootfs = [AgentMount.with {
            $0.source = "overlay"
            $0.type = "overlay"
            $0.options = ["lowerdir=/l", "upperdir=/u", "workdir=/w"]
        }]
        $0.storages = [AgentMount.with {
            $0.source = "kataShared"
            $0.target = "/run/kasa/shared"
            $0.type = "virtiofs"
        }]
        $0.readonlyRootfs = true
    }
    let bytes: [UInt8] = try request.serializedBytes()
    let decoded = try AgentCreateContainerRequest(serializedBytes: bytes)
    #expect(decoded == request)
    #expect(decoded.rootfs[0].options.count == 3)
    #expect(decoded.readonlyRootfs)
}

@Test func statsAndDetailsRoundTrip() throws {
    let stats = AgentStatsContainerResponse.with {
        $0.cpu = .with { $0.usageUsec = 1_234_567; $0.userUsec = 1_000_000; $0.systemUsec = 234_567 }
        $0.memory = .with { $0.usageBytes = 50 << 20; $0.limitBytes = 512 << 20 }
        $0.pids = .with { $0.current = 3; $0.limit = 0 }
    }
    #expect(try AgentStatsContainerResponse(serializedBytes: try stats.serializedBytes() as [UInt8]) == stats)

    let details = AgentGuestDetailsResponse.with {
        $0.memBlockSizeBytes = 128 << 20
        $0.agentDetails = .with { $0.version = "0.1.0"; $0.initDaemon = true; $0.storageHandlers = ["virtiofs", "blk"] }
    }
    #expect(try AgentGuestDetailsResponse(serializedBytes: try details.serializedBytes() as [UInt8]) == details)

    let health = AgentHealthCheckResponse.with { $0.status = .serving }
    #expect(try health.serializedBytes() == [0x08, 0x01] as [UInt8])
}

@Test func unknownServiceOrMethodMapsToNil() {
    #expect(AgentServiceMethod(service: AgentService.name, method: "Nope") == nil)
    #expect(AgentServiceMethod(service: "containerd.task.v2.Task", method: "Create") == nil)
    #expect(AgentServiceMethod(service: "kasa.agent.v1.AgentService", method: "WaitProcess") == .waitProcess)
}

/// agent.proto and the hand-written method table must agree: every rpc, in order, with
/// its request and response message.
@Test func methodTableMatchesAgentProto() throws {
    let protoURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/AgentProtocol/Proto/agent.proto")
    let text = try String(contentsOf: protoURL, encoding: .utf8)
    #expect(text.contains("package kasa.agent.v1;"))
    #expect(text.contains("service AgentService {"))
    var rpcs: [[String]] = []
    for line in text.split(separator: "\n") {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("rpc ") else { continue }
        // rpc Name(Request) returns (Response);
        let words = trimmed.split(whereSeparator: { " ();".contains($0) }).map(String.init)
        guard words.count == 5, words[3] == "returns" else {
            Issue.record("unexpected rpc line: \(trimmed)")
            continue
        }
        rpcs.append([words[1], "kasa.agent.v1." + words[2], "kasa.agent.v1." + words[4]])
    }
    #expect(rpcs.count == 30)
    let table = AgentServiceMethod.allCases.map { [$0.rawValue, $0.requestType.protoMessageName, $0.responseType.protoMessageName] }
    #expect(table == rpcs)
    #expect(AgentService.name == "kasa.agent.v1.AgentService")
}

import Foundation
import SwiftProtobuf
import Testing
import AgentProtocol

// Seeded garbage: the decoders may refuse it, but must never crash, hang or hoard memory.

private let allMessageTypes: [any SwiftProtobuf.Message.Type] =
    [TTRPCRequest.self, TTRPCResponse.self, TTRPCStatus.self, TTRPCKeyValue.self]
    + AgentServiceMethod.allCases.flatMap { [$0.requestType, $0.responseType] }

@Test(arguments: [1, 2, 3, 4] as [UInt64])
func frameDecoderSurvivesRandomBytes(seed: UInt64) throws {
    var rng = SplitMix64(seed: 0xF00D_0000 + seed)
    let limit = [0, 1, 64, 4096, TTRPCFrameHeader.maxPayloadLength][Int(seed) % 5]
    var decoder = TTRPCFrameDecoder(maxPayloadLength: limit)
    var frames = 0
    var refusals = 0
    for _ in 0 ..< 3_000 {
        var chunk = rng.bytes(Int(rng.next() % 300))
        // Now and then make the next header's length small, so whole frames occur too.
        if rng.next() % 4 == 0, chunk.count >= 4 {
            chunk[0] = 0; chunk[1] = 0; chunk[2] = 0; chunk[3] = rng.next8() % 32
        }
        do {
            for frame in try decoder.feed(chunk) {
                frames += 1
                #expect(frame.payload.count <= limit)
            }
        } catch {
            guard case .frameTooLarge(_, let length, let reportedLimit) = error else {
                Issue.record("unexpected error \(error)")
                continue
            }
            #expect(length > UInt64(limit) && reportedLimit == limit)
            refusals += 1
        }
        // Never more than one partial frame plus one chunk is held.
        #expect(decoder.bufferedByteCount <= TTRPCFrameHeader.size + limit + 300)
    }
    #expect(frames + refusals > 0)
}

@Test func frameDecoderSurvivesMutatedValidStreams() throws {
    var rng = SplitMix64(seed: 0xBADC_0DE)
    let encoder = TTRPCFrameEncoder()
    for _ in 0 ..< 300 {
        var bytes: [UInt8] = []
        for index in 0 ..< 5 {
            try encoder.encode(TTRPCFrame(streamID: UInt32(2 * index + 1), type: .request, payload: rng.bytes(Int(rng.next() % 50))), into: &bytes)
        }
        for _ in 0 ..< 3 {
            bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1) << (rng.next() % 8)
        }
        var decoder = TTRPCFrameDecoder(maxPayloadLength: 1024)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + 1 + Int(rng.next() % 40))
            _ = try? decoder.feed(bytes[offset ..< end])
            offset = end
        }
        #expect(decoder.bufferedByteCount <= bytes.count)
    }
}

@Test(arguments: [11, 12, 13] as [UInt64])
func protobufDecodersSurviveRandomBytes(seed: UInt64) {
    var rng = SplitMix64(seed: 0xDEC0_DE00 + seed)
    var accepted = 0
    for _ in 0 ..< 1_500 {
        let bytes = rng.bytes(Int(rng.next() % 200))
        for type in allMessageTypes {
            if (try? type.init(serializedBytes: bytes)) != nil { accepted += 1 }
        }
    }
    // Some garbage happens to be valid protobuf (the empty message is); most is not.
    #expect(accepted > 0)
}

@Test func protobufDecodersSurviveMutatedValidMessages() throws {
    var rng = SplitMix64(seed: 0x5EED)
    let seeds: [any SwiftProtobuf.Message] = [
        try TTRPCRequest(service: AgentService.name, method: "CreateContainer",
                         message: AgentCreateContainerRequest.with {
                             $0.containerID = "c"
                             $0.ociSpecJson = Data("{}".utf8)
                             $0.rootfs = [.with { $0.source = "/dev/vda"; $0.type = "ext4"; $0.options = ["ro"] }]
                         },
                         timeoutNanoseconds: 1_000_000, metadata: [(key: "containerd-namespace-ttrpc", value: "default")]),
        TTRPCResponse(code: .notFound, message: "gone"),
        AgentStatsContainerResponse.with { $0.cpu.usageUsec = 42; $0.memory.limitBytes = 1 << 30 },
    ]
    for message in seeds {
        let valid: [UInt8] = try message.serializedBytes()
        for _ in 0 ..< 500 {
            var bytes = valid
            switch rng.next() % 3 {
            case 0: bytes[Int(rng.next() % UInt64(bytes.count))] = rng.next8()
            case 1: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            default: bytes.insert(rng.next8(), at: Int(rng.next() % UInt64(bytes.count + 1)))
            }
            for type in allMessageTypes {
                _ = try? type.init(serializedBytes: bytes)
            }
        }
    }
}

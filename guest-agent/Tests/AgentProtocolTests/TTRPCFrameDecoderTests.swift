import Testing
import AgentProtocol

private func frames(_ count: Int) -> [TTRPCFrame] {
    let types: [TTRPCMessageType] = [.request, .response, .data]
    return (0 ..< count).map { (index: Int) -> TTRPCFrame in
        let payloadLength = (index * 7) % 40
        var payload: [UInt8] = []
        for byte in 0 ..< payloadLength {
            payload.append(UInt8(truncatingIfNeeded: byte &* 31 &+ index))
        }
        return TTRPCFrame(
            streamID: UInt32(2 * index + 1),
            type: types[index % 3],
            flags: index % 2 == 0 ? [] : .remoteClosed,
            payload: payload
        )
    }
}

private func wire(_ frames: [TTRPCFrame]) throws -> [UInt8] {
    var bytes: [UInt8] = []
    for frame in frames { try TTRPCFrameEncoder().encode(frame, into: &bytes) }
    return bytes
}

@Test func decodesAHandWrittenRequestFrame() throws {
    var decoder = TTRPCFrameDecoder()
    let out = try decoder.feed([0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 1, 2, 3, 4, 5])
    #expect(out == [TTRPCFrame(streamID: 1, type: .request, payload: [1, 2, 3, 4, 5])])
    #expect(decoder.isAtFrameBoundary)
}

@Test func decodesWhenFedOneByteAtATime() throws {
    let sent = frames(12)
    let bytes = try wire(sent)
    var decoder = TTRPCFrameDecoder()
    var received: [TTRPCFrame] = []
    var frameEnds: [Int] = []
    var offset = 0
    for frame in sent {
        offset += TTRPCFrameHeader.size + frame.payload.count
        frameEnds.append(offset)
    }
    for (index, byte) in bytes.enumerated() {
        let out = try decoder.feed([byte])
        // A frame comes out exactly when its last byte arrives, never earlier.
        #expect(out.count == (frameEnds.contains(index + 1) ? 1 : 0))
        received += out
    }
    #expect(received == sent)
    #expect(decoder.isAtFrameBoundary)
}

@Test func decodesSeveralFramesFromOneChunk() throws {
    let sent = frames(9)
    var decoder = TTRPCFrameDecoder()
    #expect(try decoder.feed(try wire(sent)) == sent)
    #expect(decoder.bufferedByteCount == 0)
}

@Test func decodesAcrossEverySplitPoint() throws {
    let sent = frames(4)
    let bytes = try wire(sent)
    for split in 0 ... bytes.count {
        var decoder = TTRPCFrameDecoder()
        var received = try decoder.feed(bytes[..<split])
        received += try decoder.feed(bytes[split...])
        #expect(received == sent, "split at \(split)")
    }
}

@Test func nextFrameWaitsForPartialHeadersAndPayloads() throws {
    var decoder = TTRPCFrameDecoder()
    decoder.append([0x00, 0x00, 0x00, 0x03, 0x00])
    #expect(try decoder.nextFrame() == nil)
    #expect(decoder.bufferedByteCount == 5)
    decoder.append([0x00, 0x00, 0x0B, 0x02, 0x01, 0xAA])
    #expect(try decoder.nextFrame() == nil)
    #expect(!decoder.isAtFrameBoundary)
    decoder.append([0xBB, 0xCC, 0x00])
    #expect(try decoder.nextFrame() == TTRPCFrame(streamID: 11, type: .response, flags: .remoteClosed, payload: [0xAA, 0xBB, 0xCC]))
    #expect(try decoder.nextFrame() == nil)
    #expect(decoder.bufferedByteCount == 1)
}

@Test func emptyPayloadFramesDecode() throws {
    var decoder = TTRPCFrameDecoder()
    let out = try decoder.feed([0, 0, 0, 0, 0, 0, 0, 1, 3, 5, 0, 0, 0, 0, 0, 0, 0, 3, 3, 4])
    #expect(out == [
        TTRPCFrame(streamID: 1, type: .data, flags: [.remoteClosed, .noData]),
        TTRPCFrame(streamID: 3, type: .data, flags: .noData),
    ])
}

@Test func oversizedLengthIsRefusedAsSoonAsTheHeaderIsIn() throws {
    var decoder = TTRPCFrameDecoder()
    // 4 MiB + 1 announced; only the header has arrived.
    decoder.append([0x00, 0x40, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x01, 0x00])
    #expect(throws: TTRPCFrameError.frameTooLarge(streamID: 7, length: (4 << 20) + 1, limit: 4 << 20)) {
        try decoder.nextFrame()
    }
    #expect(decoder.bufferedByteCount == 0)
    #expect(decoder.bytesLeftToSkip == (4 << 20) + 1)

    // The largest length a header can say is refused the same way.
    var other = TTRPCFrameDecoder()
    #expect(throws: TTRPCFrameError.frameTooLarge(streamID: 1, length: 0xFFFF_FFFF, limit: 4 << 20)) {
        try other.feed([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 1, 0])
    }
    #expect(other.bufferedByteCount == 0)
}

@Test func oversizedPayloadIsSkippedWithoutBeingBufferedAndDecodingGoesOn() throws {
    var decoder = TTRPCFrameDecoder(maxPayloadLength: 16)
    #expect(throws: TTRPCFrameError.frameTooLarge(streamID: 9, length: 100, limit: 16)) {
        try decoder.feed([0, 0, 0, 100, 0, 0, 0, 9, 1, 0] + [UInt8](repeating: 0xEE, count: 30))
    }
    #expect(decoder.bufferedByteCount == 0)
    #expect(decoder.bytesLeftToSkip == 70)
    for _ in 0 ..< 6 {
        #expect(try decoder.feed([UInt8](repeating: 0xEE, count: 10)).isEmpty)
        #expect(decoder.bufferedByteCount == 0)
    }
    #expect(decoder.bytesLeftToSkip == 10)
    let next = TTRPCFrame(streamID: 11, type: .request, payload: [1, 2, 3])
    let out = try decoder.feed([UInt8](repeating: 0xEE, count: 10) + (try wire([next])))
    #expect(out == [next])
    #expect(decoder.isAtFrameBoundary)
}

@Test func framesBeforeAnOversizedOneInTheSameChunkAreReturnedFirst() throws {
    let first = TTRPCFrame(streamID: 1, type: .request, payload: [7])
    var decoder = TTRPCFrameDecoder(maxPayloadLength: 8)
    let chunk = try wire([first]) + [0, 0, 0, 9, 0, 0, 0, 3, 1, 0] + [UInt8](repeating: 0, count: 9)
        + (try wire([TTRPCFrame(streamID: 5, type: .request, payload: [8])]))
    #expect(try decoder.feed(chunk) == [first])
    #expect(throws: TTRPCFrameError.frameTooLarge(streamID: 3, length: 9, limit: 8)) {
        try decoder.feed([])
    }
    #expect(try decoder.feed([]) == [TTRPCFrame(streamID: 5, type: .request, payload: [8])])
}

@Test func payloadOfExactlyTheLimitIsAccepted() throws {
    var decoder = TTRPCFrameDecoder(maxPayloadLength: 4)
    #expect(try decoder.feed([0, 0, 0, 4, 0, 0, 0, 1, 3, 0, 1, 2, 3, 4]) == [TTRPCFrame(streamID: 1, type: .data, payload: [1, 2, 3, 4])])
}

@Test func largeStreamsStayCompact() throws {
    // 300 frames of 1 KiB fed in 4000-byte chunks: the buffer never holds more than a
    // chunk plus one partial frame.
    let sent = (0 ..< 300).map { TTRPCFrame(streamID: UInt32(2 * $0 + 1), type: .data, payload: [UInt8](repeating: UInt8($0 % 251), count: 1024)) }
    let bytes = try wire(sent)
    var decoder = TTRPCFrameDecoder()
    var received: [TTRPCFrame] = []
    var start = 0
    while start < bytes.count {
        let end = min(start + 4000, bytes.count)
        received += try decoder.feed(bytes[start ..< end])
        #expect(decoder.bufferedByteCount < 4000 + 1034)
        start = end
    }
    #expect(received == sent)
}

import Testing
@testable import AgentProtocol

// Byte vectors here are written by hand from the framing rules (u32 BE length, u32 BE
// stream id, u8 type, u8 flags), not produced by the code under test.

@Test func requestFrameForStream1WithFiveBytePayloadIsExact() throws {
    let frame = TTRPCFrame(streamID: 1, type: .request, payload: [0x68, 0x65, 0x6c, 0x6c, 0x6f])
    let bytes = try TTRPCFrameEncoder().encode(frame)
    #expect(bytes == [0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f])
}

@Test func responseAndDataHeadersAreExact() throws {
    let response = TTRPCFrameHeader(length: 0, streamID: 3, type: .response, flags: .remoteClosed)
    #expect(response.encoded == [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x02, 0x01])

    let data = TTRPCFrameHeader(length: 0x0040_0000, streamID: 0xFFFF_FFFF, type: .data, flags: [.remoteClosed, .noData])
    #expect(data.encoded == [0x00, 0x40, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0x05])

    let open = TTRPCFrameHeader(length: 0x0102_0304, streamID: 0x0A0B_0C0D, type: .data, flags: .remoteOpen)
    #expect(open.encoded == [0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x03, 0x02])
}

@Test func headerDecodesFromHandWrittenBytes() throws {
    let header = try TTRPCFrameHeader(decoding: [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0x02, 0x04, 0xEE])
    #expect(header == TTRPCFrameHeader(length: 256, streamID: 7, type: .response, flags: .noData))
}

@Test func headerRoundTripsForSeededRandomValues() throws {
    var rng = SplitMix64(seed: 0x7474_7270_6331)
    for _ in 0 ..< 2_000 {
        let header = TTRPCFrameHeader(
            length: rng.next32(), streamID: rng.next32(),
            type: TTRPCMessageType(rawValue: rng.next8()), flags: TTRPCFrameFlags(rawValue: rng.next8())
        )
        let bytes = header.encoded
        #expect(bytes.count == TTRPCFrameHeader.size)
        #expect(try TTRPCFrameHeader(decoding: bytes) == header)
    }
}

@Test func unknownTypesAndFlagsSurviveDecoding() throws {
    let header = try TTRPCFrameHeader(decoding: [0, 0, 0, 0, 0, 0, 0, 9, 0x7F, 0xF8])
    #expect(header.type.rawValue == 0x7F)
    #expect(header.type.description == "type(127)")
    #expect(header.flags.rawValue == 0xF8)
    #expect(!header.flags.contains(.remoteClosed))
}

@Test func truncatedHeaderIsAnError() {
    #expect(throws: TTRPCFrameError.truncatedHeader(byteCount: 9)) {
        try TTRPCFrameHeader(decoding: [UInt8](repeating: 0, count: 9))
    }
    #expect(throws: TTRPCFrameError.truncatedHeader(byteCount: 0)) {
        try TTRPCFrameHeader(decoding: [UInt8]())
    }
}

@Test func encoderAcceptsFourMebibytesAndRefusesOneMore() throws {
    let encoder = TTRPCFrameEncoder()
    #expect(TTRPCFrameHeader.maxPayloadLength == 4 * 1024 * 1024)
    let largest = TTRPCFrame(streamID: 1, type: .data, payload: [UInt8](repeating: 0xAB, count: 4 << 20))
    let bytes = try encoder.encode(largest)
    #expect(bytes.count == 10 + (4 << 20))
    #expect(Array(bytes.prefix(10)) == [0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00])

    var buffer: [UInt8] = [0x42]
    let tooLarge = TTRPCFrame(streamID: 5, type: .data, payload: [UInt8](repeating: 0, count: (4 << 20) + 1))
    #expect(throws: TTRPCFrameError.frameTooLarge(streamID: 5, length: (4 << 20) + 1, limit: 4 << 20)) {
        try encoder.encode(tooLarge, into: &buffer)
    }
    #expect(buffer == [0x42])
}

@Test func encoderAppendsToExistingBytes() throws {
    var buffer: [UInt8] = [0xFF]
    try TTRPCFrameEncoder().encode(TTRPCFrame(streamID: 2, type: .response, flags: .remoteClosed, payload: [9]), into: &buffer)
    #expect(buffer == [0xFF, 0, 0, 0, 1, 0, 0, 0, 2, 2, 1, 9])
}

@Test func clientStreamIDsAreOddFromOneStepTwo() throws {
    var ids = TTRPCClientStreamIDs()
    #expect(try ids.next() == 1)
    #expect(try ids.next() == 3)
    #expect(try ids.next() == 5)
}

@Test func clientStreamIDsEndAtTheLargestOddValue() throws {
    var ids = TTRPCClientStreamIDs(first: 0xFFFF_FFFD)
    #expect(try ids.next() == 0xFFFF_FFFD)
    #expect(try ids.next() == 0xFFFF_FFFF)
    #expect(throws: TTRPCFrameError.streamIDsExhausted) { try ids.next() }
    #expect(throws: TTRPCFrameError.streamIDsExhausted) { try ids.next() }
}

@Test func statusCodesHaveTheGRPCValues() {
    #expect(TTRPCStatusCode.ok.rawValue == 0)
    #expect(TTRPCStatusCode.invalidArgument.rawValue == 3)
    #expect(TTRPCStatusCode.deadlineExceeded.rawValue == 4)
    #expect(TTRPCStatusCode.notFound.rawValue == 5)
    #expect(TTRPCStatusCode.alreadyExists.rawValue == 6)
    #expect(TTRPCStatusCode.resourceExhausted.rawValue == 8)
    #expect(TTRPCStatusCode.failedPrecondition.rawValue == 9)
    #expect(TTRPCStatusCode.unimplemented.rawValue == 12)
    #expect(TTRPCStatusCode.internal.rawValue == 13)
    #expect(TTRPCStatusCode.unavailable.rawValue == 14)
    #expect(TTRPCStatusCode.unauthenticated.rawValue == 16)
    #expect(TTRPCStatusCode.allCases.map(\.rawValue) == Array(0 ... 16))
    #expect(TTRPCStatusCode(code: 99) == .unknown)
    #expect(TTRPCStatusCode(code: -1) == .unknown)
    #expect(TTRPCStatusCode.unimplemented.description == "UNIMPLEMENTED")
    #expect(TTRPCStatusCode.failedPrecondition.description == "FAILED_PRECONDITION")
}

// ttrpc framing: every message on a ttrpc connection is a 10-byte header followed by
// `length` bytes of payload.
//
//   offset 0  u32 big-endian  payload length (at most 4 MiB)
//   offset 4  u32 big-endian  stream id (client-initiated streams: odd, from 1, step 2)
//   offset 8  u8              message type: 1 request, 2 response, 3 data
//   offset 9  u8              flags: 1 remote-closed, 2 remote-open, 4 no-data
//
// Request and response payloads are the protobuf messages TTRPCRequest and
// TTRPCResponse (ttrpc.proto); data frames carry stream data.

/// The message type byte of a frame header. Open, so that a frame of a type this code
/// does not know still decodes (the receiver decides to ignore it, as containerd does).
public struct TTRPCMessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let request = TTRPCMessageType(rawValue: 1)
    public static let response = TTRPCMessageType(rawValue: 2)
    public static let data = TTRPCMessageType(rawValue: 3)

    public var description: String {
        switch self {
        case .request: "request"
        case .response: "response"
        case .data: "data"
        default: "type(\(rawValue))"
        }
    }
}

/// The flags byte of a frame header.
public struct TTRPCFrameFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The sender will send nothing more on this stream.
    public static let remoteClosed = TTRPCFrameFlags(rawValue: 1)
    /// The sender keeps the stream open after this frame (streaming calls).
    public static let remoteOpen = TTRPCFrameFlags(rawValue: 2)
    /// The frame carries no data (a data frame that only carries flags).
    public static let noData = TTRPCFrameFlags(rawValue: 4)
}

/// Errors of the ttrpc codec.
public enum TTRPCFrameError: Error, Hashable, Sendable {
    /// A header announced (or a frame to encode has) a payload longer than the limit.
    /// The decoder throws this as soon as the header is complete, before any of the
    /// payload is buffered.
    case frameTooLarge(streamID: UInt32, length: UInt64, limit: Int)
    /// Fewer than `TTRPCFrameHeader.size` bytes were given to decode a header.
    case truncatedHeader(byteCount: Int)
    /// A client ran out of odd 32-bit stream ids.
    case streamIDsExhausted
}

/// The 10-byte header in front of every frame.
public struct TTRPCFrameHeader: Hashable, Sendable {
    /// Bytes in an encoded header.
    public static let size = 10
    /// The largest payload ttrpc accepts: 4 MiB.
    public static let maxPayloadLength = 4 << 20

    public var length: UInt32
    public var streamID: UInt32
    public var type: TTRPCMessageType
    public var flags: TTRPCFrameFlags

    public init(length: UInt32, streamID: UInt32, type: TTRPCMessageType, flags: TTRPCFrameFlags = []) {
        self.length = length
        self.streamID = streamID
        self.type = type
        self.flags = flags
    }

    /// Decodes a header from the first `size` bytes of `bytes`; any further bytes are
    /// ignored. Any 10 bytes are a valid header: limits are the decoder's business.
    public init<Bytes: Sequence<UInt8>>(decoding bytes: Bytes) throws(TTRPCFrameError) {
        let prefix = Array(bytes.prefix(Self.size))
        guard prefix.count == Self.size else { throw .truncatedHeader(byteCount: prefix.count) }
        self = prefix.withUnsafeBytes { Self(unchecked: $0) }
    }

    /// `buffer` must hold at least `size` bytes.
    init(unchecked buffer: UnsafeRawBufferPointer) {
        func u32(_ offset: Int) -> UInt32 {
            UInt32(buffer[offset]) << 24 | UInt32(buffer[offset + 1]) << 16
                | UInt32(buffer[offset + 2]) << 8 | UInt32(buffer[offset + 3])
        }
        self.init(
            length: u32(0),
            streamID: u32(4),
            type: TTRPCMessageType(rawValue: buffer[8]),
            flags: TTRPCFrameFlags(rawValue: buffer[9])
        )
    }

    /// Appends the 10 encoded bytes to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + Self.size)
        for value in [length, streamID] {
            buffer.append(UInt8(truncatingIfNeeded: value >> 24))
            buffer.append(UInt8(truncatingIfNeeded: value >> 16))
            buffer.append(UInt8(truncatingIfNeeded: value >> 8))
            buffer.append(UInt8(truncatingIfNeeded: value))
        }
        buffer.append(type.rawValue)
        buffer.append(flags.rawValue)
    }

    /// The 10 encoded bytes.
    public var encoded: [UInt8] {
        var buffer: [UInt8] = []
        encode(into: &buffer)
        return buffer
    }
}

/// One complete frame: header fields and payload.
public struct TTRPCFrame: Hashable, Sendable {
    public var streamID: UInt32
    public var type: TTRPCMessageType
    public var flags: TTRPCFrameFlags
    public var payload: [UInt8]

    public init(streamID: UInt32, type: TTRPCMessageType, flags: TTRPCFrameFlags = [], payload: [UInt8] = []) {
        self.streamID = streamID
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// The header this frame is sent with. Its length is truncated to 32 bits: the
    /// encoder refuses payloads over the limit before that matters.
    public var header: TTRPCFrameHeader {
        TTRPCFrameHeader(length: UInt32(truncatingIfNeeded: payload.count), streamID: streamID, type: type, flags: flags)
    }
}

/// Encodes frames to bytes, refusing payloads over the limit (the peer would reject them).
public struct TTRPCFrameEncoder: Sendable {
    public let maxPayloadLength: Int

    public init(maxPayloadLength: Int = TTRPCFrameHeader.maxPayloadLength) {
        precondition(maxPayloadLength >= 0 && UInt64(maxPayloadLength) <= UInt64(UInt32.max))
        self.maxPayloadLength = maxPayloadLength
    }

    /// Appends header and payload of `frame` to `buffer`; on error `buffer` is unchanged.
    public func encode(_ frame: TTRPCFrame, into buffer: inout [UInt8]) throws(TTRPCFrameError) {
        guard frame.payload.count <= maxPayloadLength else {
            throw .frameTooLarge(streamID: frame.streamID, length: UInt64(frame.payload.count), limit: maxPayloadLength)
        }
        buffer.reserveCapacity(buffer.count + TTRPCFrameHeader.size + frame.payload.count)
        frame.header.encode(into: &buffer)
        buffer.append(contentsOf: frame.payload)
    }

    /// Header and payload of `frame`.
    public func encode(_ frame: TTRPCFrame) throws(TTRPCFrameError) -> [UInt8] {
        var buffer: [UInt8] = []
        try encode(frame, into: &buffer)
        return buffer
    }
}

/// Stream ids for the client side of a connection: odd, from 1, step 2.
public struct TTRPCClientStreamIDs: Sendable {
    private var nextID: UInt32? = 1

    public init() {}

    /// For tests: start at the odd id `first`.
    init(first: UInt32) {
        precondition(first % 2 == 1)
        nextID = first
    }

    /// The next unused id; throws once all 2^31 odd ids have been handed out.
    public mutating func next() throws(TTRPCFrameError) -> UInt32 {
        guard let id = nextID else { throw .streamIDsExhausted }
        let (following, overflow) = id.addingReportingOverflow(2)
        nextID = overflow ? nil : following
        return id
    }
}

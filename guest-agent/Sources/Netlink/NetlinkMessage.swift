/// rtnetlink messages as bytes: a 16-byte nlmsghdr, a fixed family header (ifinfomsg,
/// ifaddrmsg, rtmsg, ndmsg, tcmsg), then attributes (rtattr: u16 length, u16 type,
/// payload, padded to 4 bytes). All integers in host order (little-endian on x86_64) but
/// where a protocol says network order. Built and parsed here without any pointer.
public struct NetlinkMessage: Equatable, Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32 = 0
    /// The family header and attributes that follow the nlmsghdr.
    public var payload: [UInt8]

    public init(type: UInt16, flags: UInt16, payload: [UInt8] = []) {
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    static let headerSize = 16

    /// The message as the kernel reads it (pid 0: the kernel fills in the sender).
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(NetlinkMessage.headerSize + payload.count)
        out.appendLittleEndian(UInt32(NetlinkMessage.headerSize + payload.count))
        out.appendLittleEndian(type)
        out.appendLittleEndian(flags)
        out.appendLittleEndian(sequence)
        out.appendLittleEndian(UInt32(0))
        out += payload
        return out
    }

    /// Splits a datagram from the kernel into its messages; nil when a length is wrong.
    public static func parse(_ bytes: [UInt8]) -> [NetlinkMessage]? {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while offset + headerSize <= bytes.count {
            let length = Int(bytes.littleEndian(UInt32.self, at: offset))
            guard length >= headerSize, length <= bytes.count - offset else { return nil }
            var message = NetlinkMessage(type: bytes.littleEndian(UInt16.self, at: offset + 4),
                                         flags: bytes.littleEndian(UInt16.self, at: offset + 6),
                                         payload: Array(bytes[(offset + headerSize)..<(offset + length)]))
            message.sequence = bytes.littleEndian(UInt32.self, at: offset + 8)
            messages.append(message)
            offset += NetlinkAttribute.aligned(length)
        }
        return messages
    }
}

/// One rtattr: a type and a payload (itself attributes when nested).
public struct NetlinkAttribute: Equatable, Sendable {
    public var type: UInt16
    public var payload: [UInt8]

    public init(_ type: UInt16, _ payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    public init(_ type: UInt16, string: String) { self.init(type, Array(string.utf8) + [0]) }
    public init(_ type: UInt16, u32: UInt32) { self.init(type, [UInt8].littleEndian(u32)) }
    public init(_ type: UInt16, nested: [NetlinkAttribute]) { self.init(type, NetlinkAttribute.encode(nested)) }

    static func aligned(_ length: Int) -> Int { (length + 3) & ~3 }

    public static func encode(_ attributes: [NetlinkAttribute]) -> [UInt8] {
        var out: [UInt8] = []
        for attribute in attributes {
            let length = 4 + attribute.payload.count
            out.appendLittleEndian(UInt16(length))
            out.appendLittleEndian(attribute.type)
            out += attribute.payload
            out += [UInt8](repeating: 0, count: aligned(length) - length)
        }
        return out
    }

    /// The attributes in `bytes` (after a family header); a malformed tail is ignored.
    public static func decode(_ bytes: ArraySlice<UInt8>) -> [NetlinkAttribute] {
        var attributes: [NetlinkAttribute] = []
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(bytes.littleEndian(UInt16.self, at: offset))
            guard length >= 4, length <= bytes.endIndex - offset else { break }
            // NLA_F_NESTED and NLA_F_NET_BYTEORDER live in the type's top bits.
            let type = bytes.littleEndian(UInt16.self, at: offset + 2) & 0x3FFF
            attributes.append(NetlinkAttribute(type, Array(bytes[(offset + 4)..<(offset + length)])))
            offset += aligned(length)
        }
        return attributes
    }

    public var u32: UInt32? { payload.count >= 4 ? payload.littleEndian(UInt32.self, at: 0) : nil }
    public var string: String { String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self) }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLittleEndian(value)
        return out
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// A little-endian integer at `offset`; the caller has checked the bounds.
    func littleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        var value: T = 0
        for byte in 0..<MemoryLayout<T>.size { value |= T(self[offset + byte]) << (8 * byte) }
        return value
    }
}

/// Little-endian field writer for building boot structures in a byte array before they
/// are copied into guest memory, so each structure can be unit-tested as plain bytes.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    public mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (index, byte) in raw.enumerated() { bytes[offset + index] = byte }
        }
    }

    public mutating func put(_ data: some Collection<UInt8>, at offset: Int) {
        for (index, byte) in data.enumerated() { bytes[offset + index] = byte }
    }

    public mutating func put(ascii text: String, at offset: Int) {
        put(Array(text.utf8), at: offset)
    }
}

/// Little-endian reads from a byte array with bounds checks that report what was cut off.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }

    public func get<T: FixedWidthInteger>(_ type: T.Type, at offset: Int, what: String) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= bytes.count - size else { throw BootError.truncated(what: what) }
        var value: T = 0
        for index in 0..<size {
            value |= T(bytes[offset + index]) << (8 * index)
        }
        return value
    }

    public func slice(at offset: UInt64, count: UInt64, what: String) throws -> ArraySlice<UInt8> {
        guard offset <= UInt64(bytes.count), count <= UInt64(bytes.count) - offset else {
            throw BootError.truncated(what: what)
        }
        return bytes[Int(offset)..<Int(offset + count)]
    }
}

/// The 8-bit checksum convention of the MP specification and the zero page: all bytes sum to 0.
public func checksumByte(_ bytes: some Sequence<UInt8>) -> UInt8 {
    let sum = bytes.reduce(UInt8(0)) { $0 &+ $1 }
    return 0 &- sum
}

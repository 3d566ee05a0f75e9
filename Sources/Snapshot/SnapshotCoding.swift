/// Little-endian encoding of a snapshot's state file: integers, byte strings and text,
/// each length-prefixed. Every layer of the VMM encodes its own state with these; reading
/// checks every length against what is left, so a damaged file is an error, never a crash.
public struct SnapshotEncoder: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func append<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func append(_ value: Bool) { append(UInt8(value ? 1 : 0)) }

    public mutating func append(bytes data: some Collection<UInt8>) {
        append(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    public mutating func append(_ text: String) { append(bytes: Array(text.utf8)) }

    public mutating func append(optional text: String?) {
        append(text != nil)
        if let text { append(text) }
    }
}

public struct SnapshotDecoder: Sendable {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func read<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type, _ what: String) throws -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count - offset >= size else { throw SnapshotError.truncated(what) }
        var value: T = 0
        for index in 0..<size { value |= T(bytes[offset + index]) << (8 * index) }
        offset += size
        return value
    }

    public mutating func readBool(_ what: String) throws -> Bool {
        switch try read(UInt8.self, what) {
        case 0: return false
        case 1: return true
        default: throw SnapshotError.invalid("\(what) is not a boolean")
        }
    }

    /// A length-prefixed byte string of at most `limit` bytes.
    public mutating func readBytes(_ what: String, limit: Int = 1 << 24) throws -> [UInt8] {
        let count = try read(UInt64.self, what)
        guard count <= UInt64(limit) else { throw SnapshotError.invalid("\(what) claims \(count) bytes (at most \(limit))") }
        guard UInt64(bytes.count - offset) >= count else { throw SnapshotError.truncated(what) }
        let result = Array(bytes[offset..<offset + Int(count)])
        offset += Int(count)
        return result
    }

    public mutating func readString(_ what: String) throws -> String {
        let raw = try readBytes(what, limit: 1 << 16)
        guard let text = String(validating: raw, as: UTF8.self) else { throw SnapshotError.invalid("\(what) is not UTF-8") }
        return text
    }

    public mutating func readOptionalString(_ what: String) throws -> String? {
        try readBool(what) ? try readString(what) : nil
    }

    /// A count of items that follow, each at least `minimumItemSize` bytes, at most `limit`.
    public mutating func readCount(_ what: String, limit: Int, minimumItemSize: Int = 1) throws -> Int {
        let count = try read(UInt32.self, what)
        guard count <= UInt32(limit) else { throw SnapshotError.invalid("\(what): \(count) (at most \(limit))") }
        guard UInt64(count) * UInt64(minimumItemSize) <= UInt64(bytes.count - offset) else { throw SnapshotError.truncated(what) }
        return Int(count)
    }
}

public enum SnapshotError: Error, Equatable, Sendable, CustomStringConvertible {
    case notASnapshot(String)
    case unsupportedFormat(found: UInt32, supported: UInt32)
    case checksumMismatch
    case truncated(String)
    case invalid(String)
    case incompatible(String)
    case memoryFileMismatch(String)
    case io(String)

    public var description: String {
        switch self {
        case .notASnapshot(let path): return "\(path) is not a kasa-vmm snapshot"
        case .unsupportedFormat(let found, let supported):
            return "snapshot format \(found) is not supported (this kasa-vmm reads format \(supported))"
        case .checksumMismatch: return "the snapshot's state file is corrupted (checksum mismatch)"
        case .truncated(let what): return "the snapshot's state file ends early (in \(what))"
        case .invalid(let what): return "the snapshot's state file is invalid: \(what)"
        case .incompatible(let why): return "the snapshot cannot be restored here: \(why)"
        case .memoryFileMismatch(let why): return "the snapshot's memory file does not belong to its state file: \(why)"
        case .io(let what): return what
        }
    }
}

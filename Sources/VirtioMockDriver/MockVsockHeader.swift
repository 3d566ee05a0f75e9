import GuestMemory

/// The guest driver's own encoding of struct virtio_vsock_hdr (virtio 1.2, section 5.10.6):
/// 44 bytes, little endian, in front of every packet on the rx and tx queues. Kept apart from
/// the device's codec on purpose: a guest written from the spec, not from the device.
public struct MockVsockHeader: Equatable, Sendable {
    public static let size = 44
    public static let typeStream: UInt16 = 1

    /// The header's `op` field.
    public enum Operation: UInt16, Sendable {
        case request = 1, response = 2, reset = 3, shutdown = 4, readWrite = 5, creditUpdate = 6, creditRequest = 7
    }

    public var sourceCID: UInt64
    public var destinationCID: UInt64
    public var sourcePort: UInt32
    public var destinationPort: UInt32
    /// Payload bytes following the header.
    public var length: UInt32
    public var type: UInt16
    public var operation: UInt16
    public var flags: UInt32
    /// The sender's receive buffer for this stream (credit).
    public var bufferAllocation: UInt32
    /// Bytes the sender has consumed from this stream so far (credit).
    public var forwardCount: UInt32

    public init(sourceCID: UInt64 = 0, destinationCID: UInt64 = 0, sourcePort: UInt32 = 0, destinationPort: UInt32 = 0,
                length: UInt32 = 0, type: UInt16 = MockVsockHeader.typeStream, operation: Operation,
                flags: UInt32 = 0, bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.operation = operation.rawValue
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Reads the header at `address` in guest memory.
    public init(memory: GuestMemory, at address: UInt64) throws {
        func field<T: FixedWidthInteger>(_ offset: UInt64, _ type: T.Type) throws -> T {
            try memory.read(type, at: GuestAddress(address + offset))
        }
        sourceCID = try field(0, UInt64.self)
        destinationCID = try field(8, UInt64.self)
        sourcePort = try field(16, UInt32.self)
        destinationPort = try field(20, UInt32.self)
        length = try field(24, UInt32.self)
        type = try field(28, UInt16.self)
        operation = try field(30, UInt16.self)
        flags = try field(32, UInt32.self)
        bufferAllocation = try field(36, UInt32.self)
        forwardCount = try field(40, UInt32.self)
    }

    /// The known operation, or nil for a value the spec does not define.
    public var knownOperation: Operation? { Operation(rawValue: operation) }

    /// Writes the header at `address` in guest memory.
    public func write(to memory: GuestMemory, at address: UInt64) throws {
        func field<T: FixedWidthInteger>(_ offset: UInt64, _ value: T) throws {
            try memory.write(value, at: GuestAddress(address + offset))
        }
        try field(0, sourceCID)
        try field(8, destinationCID)
        try field(16, sourcePort)
        try field(20, destinationPort)
        try field(24, length)
        try field(28, type)
        try field(30, operation)
        try field(32, flags)
        try field(36, bufferAllocation)
        try field(40, forwardCount)
    }
}

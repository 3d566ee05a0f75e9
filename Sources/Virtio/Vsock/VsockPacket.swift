/// The virtio-vsock packet header (virtio 1.2, section 5.10.6): 44 bytes, little endian,
/// in front of every packet on the rx and tx queues.
struct VsockHeader: Equatable, Sendable {
    static let size = 44
    /// The only socket type this device supports.
    static let typeStream: UInt16 = 1

    var sourceCID: UInt64 = 0
    var destinationCID: UInt64 = 0
    var sourcePort: UInt32 = 0
    var destinationPort: UInt32 = 0
    /// Payload bytes following the header.
    var length: UInt32 = 0
    var type: UInt16 = VsockHeader.typeStream
    var operation: UInt16 = 0
    var flags: UInt32 = 0
    /// The sender's receive buffer size for this connection (credit).
    var bufferAllocation: UInt32 = 0
    /// Bytes the sender has consumed from this connection so far (credit).
    var forwardCount: UInt32 = 0

    init(sourceCID: UInt64 = 0, destinationCID: UInt64 = 0, sourcePort: UInt32 = 0, destinationPort: UInt32 = 0,
         length: UInt32 = 0, type: UInt16 = VsockHeader.typeStream, operation: UInt16 = 0, flags: UInt32 = 0,
         bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.operation = operation
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Decodes the first 44 bytes; nil when there are fewer.
    init?(bytes: [UInt8]) {
        guard bytes.count >= VsockHeader.size else { return nil }
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            var value: T = 0
            for index in 0..<MemoryLayout<T>.size {
                value |= T(bytes[offset + index]) << (8 * index)
            }
            return value
        }
        sourceCID = field(0, UInt64.self)
        destinationCID = field(8, UInt64.self)
        sourcePort = field(16, UInt32.self)
        destinationPort = field(20, UInt32.self)
        length = field(24, UInt32.self)
        type = field(28, UInt16.self)
        operation = field(30, UInt16.self)
        flags = field(32, UInt32.self)
        bufferAllocation = field(36, UInt32.self)
        forwardCount = field(40, UInt32.self)
    }

    var bytes: [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(VsockHeader.size)
        func append<T: FixedWidthInteger>(_ value: T) {
            for index in 0..<MemoryLayout<T>.size { result.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
        }
        append(sourceCID)
        append(destinationCID)
        append(sourcePort)
        append(destinationPort)
        append(length)
        append(type)
        append(operation)
        append(flags)
        append(bufferAllocation)
        append(forwardCount)
        return result
    }
}

/// Packet operations (the header's `op` field).
enum VsockOperation: UInt16, Sendable {
    case request = 1
    case response = 2
    case reset = 3
    case shutdown = 4
    case readWrite = 5
    case creditUpdate = 6
    case creditRequest = 7
}

/// SHUTDOWN flags, from the sender's point of view.
enum VsockShutdown {
    /// The sender will not receive any more data.
    static let receive: UInt32 = 1
    /// The sender will not send any more data.
    static let send: UInt32 = 2
    static let both: UInt32 = 3
}

import GuestMemory

/// Reads a chain's device-readable buffers and fills its device-writable ones, in order.
public extension DescriptorChain {
    /// All readable bytes, refusing chains that claim more than `limit` bytes.
    func readAll(memory: GuestMemory, limit: Int = 1 << 24) throws -> [UInt8] {
        guard readableLength <= limit else { throw VirtioDeviceError.requestTooLarge(readableLength) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(readableLength)
        for descriptor in readable where descriptor.length > 0 {
            bytes += try memory.readBytes(at: descriptor.address, count: Int(descriptor.length))
        }
        return bytes
    }

    /// Writes `bytes` across the writable buffers; returns how many fitted.
    @discardableResult
    func write(_ bytes: some Collection<UInt8>, memory: GuestMemory, skipping offset: Int = 0) throws -> Int {
        var remaining = bytes[...]
        var skip = offset
        var written = 0
        for descriptor in writable where !remaining.isEmpty {
            var length = Int(descriptor.length)
            var start = descriptor.address.value
            if skip >= length { skip -= length; continue }
            start += UInt64(skip)
            length -= skip
            skip = 0
            let part = remaining.prefix(length)
            try memory.write(bytes: part, at: GuestAddress(start))
            remaining = remaining.dropFirst(part.count)
            written += part.count
        }
        return written
    }
}

public enum VirtioDeviceError: Error, Equatable, Sendable {
    case requestTooLarge(Int)
    case malformedRequest(String)
}

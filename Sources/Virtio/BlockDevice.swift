import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

/// virtio-blk backed by a file or block device: read, write, flush and get-id, with an
/// optional read-only mode. Requests run synchronously on the thread that delivers the
/// queue notification (the VMM's event loop).
///
/// A drive may also start empty (capacity 0) and get its medium while the guest runs:
/// `insertMedium`/`ejectMedium`, called through `VirtioMMIOTransport.changeConfiguration`,
/// which tells the driver (Linux re-reads the capacity on a config-change interrupt). That
/// is how a pod's later containers reach a running VM without hotplugging a whole device.
public final class BlockDevice: VirtioDevice, @unchecked Sendable {
    public static let sectorSize: UInt64 = 512
    static let requestHeaderSize = 16
    static let idLength = 20
    enum RequestType: UInt32 { case read = 0, write = 1, flush = 4, getID = 8 }
    enum Status: UInt8 { case ok = 0, ioError = 1, unsupported = 2 }
    enum Feature {
        static let sizeMax: UInt64 = 1 << 1, segmentMax: UInt64 = 1 << 2, readOnly: UInt64 = 1 << 5, flush: UInt64 = 1 << 9
    }
    static let maximumSegmentSize: UInt32 = 1 << 20
    static let maximumSegments: UInt32 = 126

    public let deviceType = VirtioDeviceType.block
    public let queueMaximumSizes: [UInt16] = [256]
    public let readOnly: Bool
    // The medium, guarded by the transport's lock (every device call holds it); -1 and 0
    // for an empty drive.
    public private(set) var path: String
    public private(set) var capacitySectors: UInt64
    private var descriptor: Int32
    private var identifier: [UInt8]
    /// The identifier as given (nil: derived from the file name).
    public private(set) var identifierText: String?
    private var context: VirtioDeviceContext?  // guarded by the transport's lock

    public var deviceFeatures: UInt64 {
        Feature.sizeMax | Feature.segmentMax | Feature.flush | (readOnly ? Feature.readOnly : 0)
    }

    /// Opens the backing file; `identifier` (at most 20 bytes) answers GET_ID.
    /// O_DIRECT is not offered: it needs sector-aligned bounce buffers, which this device
    /// does not have yet; the host page cache is used.
    public init(path: String, readOnly: Bool, identifier: String? = nil) throws {
        let medium = try BlockDevice.open(path, readOnly: readOnly)
        self.path = path
        self.readOnly = readOnly
        self.descriptor = medium.descriptor
        self.capacitySectors = medium.sectors
        self.identifier = BlockDevice.identifierBytes(identifier, path: path)
        self.identifierText = identifier
    }

    /// A drive with no medium yet: capacity 0, every read or write fails until `insertMedium`.
    public init(emptyReadOnly readOnly: Bool, identifier: String? = nil) {
        self.path = ""
        self.readOnly = readOnly
        self.descriptor = -1
        self.capacitySectors = 0
        self.identifier = BlockDevice.identifierBytes(identifier, path: "")
    }

    public var hasMedium: Bool { descriptor >= 0 }

    /// Puts a file in an empty drive. Call through the transport's `changeConfiguration`.
    public func insertMedium(path: String, identifier: String? = nil) throws {
        guard descriptor < 0 else { throw BlockDeviceError.occupied(current: self.path) }
        let medium = try BlockDevice.open(path, readOnly: readOnly)
        load(medium, name: path, identifier: identifier)
    }

    /// Puts an open file in an empty drive: `descriptor` becomes the drive's (closed here
    /// when it cannot be used); `name` stands for its path in messages and, without an
    /// identifier, in the serial. How a VMM that cannot open the runtime's files by path
    /// (`kasa-vmm --user`) gets them. Call through the transport's `changeConfiguration`.
    public func insertMedium(descriptor: Int32, name: String, identifier: String? = nil) throws {
        guard self.descriptor < 0 else {
            close(descriptor)
            throw BlockDeviceError.occupied(current: self.path)
        }
        load((descriptor, try BlockDevice.measure(descriptor, path: name)), name: name, identifier: identifier)
    }

    /// Makes `medium` the drive's, known as `name`.
    private func load(_ medium: (descriptor: Int32, sectors: UInt64), name: String, identifier: String?) {
        path = name
        descriptor = medium.descriptor
        capacitySectors = medium.sectors
        self.identifier = BlockDevice.identifierBytes(identifier, path: name)
        identifierText = identifier
    }

    /// Empties the drive (the guest should have stopped using it). Call through the
    /// transport's `changeConfiguration`.
    public func ejectMedium() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        capacitySectors = 0
        path = ""
        identifier = BlockDevice.identifierBytes(nil, path: "")
        identifierText = nil
    }

    private static func open(_ path: String, readOnly: Bool) throws -> (descriptor: Int32, sectors: UInt64) {
        let flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        let descriptor = Glibc.open(path, flags)
        if descriptor < 0 { throw BlockDeviceError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        return (descriptor, try measure(descriptor, path: path))
    }

    /// The medium's size in sectors; closes `descriptor` and throws when it has none.
    private static func measure(_ descriptor: Int32, path: String) throws -> UInt64 {
        let size = lseek(descriptor, 0, SEEK_END)
        if size < 0 {
            close(descriptor)
            throw BlockDeviceError.cannotOpen(path: path, reason: "cannot determine its size")
        }
        guard UInt64(size) % BlockDevice.sectorSize == 0 else {
            close(descriptor)
            throw BlockDeviceError.sizeNotSectorMultiple(path: path, size: UInt64(size))
        }
        return UInt64(size) / BlockDevice.sectorSize
    }

    private static func identifierBytes(_ identifier: String?, path: String) -> [UInt8] {
        let name = Array((identifier ?? String(path.split(separator: "/").last ?? "kasa")).utf8.prefix(BlockDevice.idLength))
        return name + [UInt8](repeating: 0, count: BlockDevice.idLength - name.count)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Config space: capacity (u64 sectors), size_max (u32), seg_max (u32); the rest reads zero.
    public func readConfiguration(offset: Int, count: Int) -> [UInt8] {
        var space = [UInt8](repeating: 0, count: 64)
        for index in 0..<8 { space[index] = UInt8(truncatingIfNeeded: capacitySectors >> (8 * UInt64(index))) }
        for index in 0..<4 {
            space[8 + index] = UInt8(truncatingIfNeeded: BlockDevice.maximumSegmentSize >> (8 * UInt32(index)))
            space[12 + index] = UInt8(truncatingIfNeeded: BlockDevice.maximumSegments >> (8 * UInt32(index)))
        }
        guard offset >= 0, count >= 0, offset < space.count else { return [UInt8](repeating: 0, count: max(count, 0)) }
        let end = min(space.count, offset + count)
        return Array(space[offset..<end]) + [UInt8](repeating: 0, count: count - (end - offset))
    }

    public func writeConfiguration(offset: Int, bytes: [UInt8]) {}
    public func activate(_ context: VirtioDeviceContext) throws { self.context = context }
    public func reset() { context = nil }

    public func queueNotified(_ index: Int) {
        guard let context, index == 0 else { return }
        context.drainQueue(0) { process($0, memory: context.memory) }
    }

    /// Runs one request; returns the bytes written into the chain (data + status byte).
    func process(_ chain: DescriptorChain, memory: GuestMemory) -> UInt32 {
        // Layout: readable header, data buffers, one writable status byte at the very end.
        guard let statusBuffer = chain.writable.last ?? chain.readable.last, statusBuffer.length >= 1 else { return 0 }
        // The chain's buffers were checked against guest memory; the arithmetic is checked anyway.
        let (statusOffset, overflow) = statusBuffer.address.value.addingReportingOverflow(UInt64(statusBuffer.length) - 1)
        guard !overflow else { return 0 }
        let statusAddress = GuestAddress(statusOffset)
        func finish(_ status: Status, dataBytes: UInt32 = 0) -> UInt32 {
            guard statusBuffer.isWriteOnly, (try? memory.write(status.rawValue, at: statusAddress)) != nil else { return dataBytes }
            return dataBytes + 1
        }
        guard let header = try? readHeader(chain, memory: memory) else { return finish(.ioError) }
        guard let type = RequestType(rawValue: header.type) else { return finish(.unsupported) }
        // Data buffers: everything between the header and the status byte.
        let data = dataBuffers(chain, statusBuffer: statusBuffer)
        let length = data.reduce(UInt64(0)) { $0 + UInt64($1.length) }
        if descriptor < 0 && type != .getID { return finish(.ioError) }
        switch type {
        case .read, .write:
            // size_max and seg_max, advertised in config space, bound what one request may
            // carry: a driver that ignores them gets an error, not the work.
            guard data.count <= Int(BlockDevice.maximumSegments),
                  data.allSatisfy({ $0.length <= BlockDevice.maximumSegmentSize }) else { return finish(.ioError) }
            let offset = header.sector.multipliedReportingOverflow(by: BlockDevice.sectorSize)
            guard !offset.overflow, length % BlockDevice.sectorSize == 0,
                  offset.partialValue <= capacitySectors * BlockDevice.sectorSize,
                  length <= capacitySectors * BlockDevice.sectorSize - offset.partialValue else { return finish(.ioError) }
            if type == .write {
                guard !readOnly, data.allSatisfy({ !$0.isWriteOnly }) else { return finish(.ioError) }
                return transfer(data, at: offset.partialValue, memory: memory, write: true) ? finish(.ok) : finish(.ioError)
            }
            guard data.allSatisfy(\.isWriteOnly) else { return finish(.ioError) }
            return transfer(data, at: offset.partialValue, memory: memory, write: false)
                ? finish(.ok, dataBytes: UInt32(truncatingIfNeeded: length)) : finish(.ioError)
        case .flush:
            if readOnly { return finish(.ok) }
            return fsync(descriptor) == 0 ? finish(.ok) : finish(.ioError)
        case .getID:
            guard let target = data.first, target.isWriteOnly else { return finish(.ioError) }
            let count = min(Int(target.length), BlockDevice.idLength)
            guard (try? memory.write(bytes: identifier.prefix(count), at: target.address)) != nil else { return finish(.ioError) }
            return finish(.ok, dataBytes: UInt32(count))
        }
    }

    private func readHeader(_ chain: DescriptorChain, memory: GuestMemory) throws -> (type: UInt32, sector: UInt64) {
        guard let first = chain.readable.first, first.length >= UInt32(BlockDevice.requestHeaderSize) else {
            throw VirtioDeviceError.malformedRequest("block request header shorter than 16 bytes")
        }
        return (try memory.read(UInt32.self, at: first.address), try memory.read(UInt64.self, at: first.address.advanced(by: 8)))
    }

    private func dataBuffers(_ chain: DescriptorChain, statusBuffer: Descriptor) -> [Descriptor] {
        var buffers = Array(chain.descriptors.dropFirst())
        if !buffers.isEmpty { buffers.removeLast() }
        // A status byte sharing the last data buffer is not data.
        if statusBuffer.length > 1 {
            buffers.append(Descriptor(address: statusBuffer.address, length: statusBuffer.length - 1, isWriteOnly: statusBuffer.isWriteOnly))
        }
        return buffers
    }

    private func transfer(_ buffers: [Descriptor], at start: UInt64, memory: GuestMemory, write isWrite: Bool) -> Bool {
        var offset = start
        for buffer in buffers where buffer.length > 0 {
            let count = Int(buffer.length)
            if isWrite {
                guard let bytes = try? memory.readBytes(at: buffer.address, count: count) else { return false }
                guard writeFully(bytes, at: offset) else { return false }
            } else {
                guard let bytes = readFully(count: count, at: offset),
                      (try? memory.write(bytes: bytes, at: buffer.address)) != nil else { return false }
            }
            offset += UInt64(count)
        }
        return true
    }

    private func writeFully(_ bytes: [UInt8], at offset: UInt64) -> Bool {
        var done = 0
        while done < bytes.count {
            let result = bytes[done...].withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(offset) + off_t(done)) }
            if result < 0 { if errno == EINTR { continue }; return false }
            done += result
        }
        return true
    }

    private func readFully(count: Int, at offset: UInt64) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes[done...].withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(offset) + off_t(done)) }
            if result < 0 { if errno == EINTR { continue }; return nil }
            if result == 0 { return nil }
            done += result
        }
        return bytes
    }
}

public enum BlockDeviceError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case sizeNotSectorMultiple(path: String, size: UInt64)
    case occupied(current: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): return "cannot open drive '\(path)': \(reason)"
        case .sizeNotSectorMultiple(let path, let size): return "drive '\(path)' is \(size) bytes, not a multiple of 512"
        case .occupied(let current): return "the drive already holds '\(current)'"
        }
    }
}

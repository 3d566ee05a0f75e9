import GuestMemory
import Synchronization
import Virtio
import VirtioMockDriver
#if canImport(Glibc)
import Glibc
#endif

/// Counts interrupts the transport raises (from whichever thread it runs on).
final class InterruptCounter: Sendable {
    let value = Atomic<Int>(0)
    func raise() { value.wrappingAdd(1, ordering: .relaxed) }
}

/// virtio-blk through the real transport and `BlockDevice`, against a file filled once.
///
/// Every 4 KiB block of the file starts with its own byte offset (u64, little endian), the
/// rest is 0xA5; reads check those stamps, writes write them, so the file stays valid and
/// nothing is served from holes.
final class BlockBench {
    static let stampInterval = 4096
    // Guest memory layout (8 MiB): rings at 0x10000, request headers at 0x100000, status bytes
    // at 0x101000, data buffers from 0x200000 (one 64 KiB slot per request in flight).
    static let ringBase: UInt64 = 0x10000
    static let headerBase: UInt64 = 0x100000
    static let statusBase: UInt64 = 0x101000
    static let dataBase: UInt64 = 0x200000
    static let dataSlot: UInt64 = 64 << 10
    static let maximumDepth = 32

    let path: String
    let fileSize: UInt64

    /// Creates the file in `directory` (sparse, then filled once) and syncs it.
    init(directory: String, fileSize: UInt64) throws {
        var template = Array((directory + "/kasa-device-bench-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw BenchError("cannot create a file in \(directory): \(String(cString: strerror(errno)))") }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        self.fileSize = fileSize
        defer { close(fd) }
        guard ftruncate(fd, off_t(fileSize)) == 0 else { throw BenchError("ftruncate \(path): \(String(cString: strerror(errno)))") }
        var chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        var offset: UInt64 = 0
        while offset < fileSize {
            let count = Int(min(UInt64(chunk.count), fileSize - offset))
            BlockBench.stamp(&chunk, count: count, fileOffset: offset)
            var done = 0
            while done < count {
                let written = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
                guard written > 0 else { throw BenchError("writing \(path): \(String(cString: strerror(errno)))") }
                done += written
            }
            offset += UInt64(count)
        }
        guard fsync(fd) == 0 else { throw BenchError("fsync \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { unlink(path) }

    static func stamp(_ buffer: inout [UInt8], count: Int, fileOffset: UInt64) {
        var position = 0
        while position < count {
            let value = fileOffset + UInt64(position)
            for byte in 0..<8 { buffer[position + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte))) }
            position += stampInterval
        }
    }

    /// Pushes the file's dirty pages to disk (untimed, between write runs).
    func sync() {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    struct Run {
        var requests = 0
        var seconds = 0.0
        var deviceSeconds = 0.0
        var interrupts = 0
    }

    /// One configuration: `runs` runs of `seconds` each after an untimed warm-up of
    /// `warmUp` seconds; all on one device and transport, set up through the registers.
    func measure(write: Bool, size: Int, depth: Int, seconds: Double, runs: Int, warmUp: Double) throws -> ResultRow {
        precondition(size % BlockBench.stampInterval == 0 && UInt64(size) <= BlockBench.dataSlot && depth <= BlockBench.maximumDepth)
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 8 << 20)])
        let device = try BlockDevice(path: path, readOnly: false, identifier: "bench")
        let interrupts = InterruptCounter()
        let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: { interrupts.raise() },
                                            report: { say("transport: \($0)") })
        let driver = MockDriver(memory: memory, size: 256, base: BlockBench.ringBase)
        let registers = RegisterDriver(transport: transport)
        registers.initialize(features: VirtioFeature.version1 | device.deviceFeatures, drivers: [driver])
        guard transport.isActive else { throw BenchError("virtio-blk did not activate") }

        // Data slots of write requests: the filler pattern (stamps are written per request).
        for slot in 0..<depth {
            try memory.fill(0xA5, at: GuestAddress(BlockBench.dataBase + UInt64(slot) * BlockBench.dataSlot), count: size)
        }
        var random = BenchRandom(state: 0x6b61_7361 ^ UInt64(size) ^ UInt64(depth) << 20 ^ (write ? 1 << 40 : 0))
        let blocks = fileSize / UInt64(size)
        var offsets = [UInt64](repeating: 0, count: depth)

        func run(for duration: Double) throws -> Run {
            var result = Run()
            let interruptsBefore = interrupts.value.load(ordering: .relaxed)
            let start = now()
            repeat {
                for slot in 0..<depth {
                    let offset = random.below(blocks) * UInt64(size)
                    offsets[slot] = offset
                    let header = BlockBench.headerBase + UInt64(slot) * 16
                    let data = BlockBench.dataBase + UInt64(slot) * BlockBench.dataSlot
                    let status = BlockBench.statusBase + UInt64(slot) * 16
                    try memory.write(UInt32(write ? 1 : 0), at: GuestAddress(header))
                    try memory.write(UInt32(0), at: GuestAddress(header + 4))
                    try memory.write(offset / 512, at: GuestAddress(header + 8))
                    if write {
                        for position in stride(from: 0, to: size, by: BlockBench.stampInterval) {
                            try memory.write(offset + UInt64(position), at: GuestAddress(data + UInt64(position)))
                        }
                    }
                    try memory.write(UInt8(0xFF), at: GuestAddress(status))
                    try driver.add(head: UInt16(slot * 3), [
                        .init(address: header, length: 16, writable: false),
                        .init(address: data, length: UInt32(size), writable: !write),
                        .init(address: status, length: 1, writable: true),
                    ])
                }
                // The VMM's ioeventfd handler makes this same call; the device works synchronously.
                let before = now()
                transport.notify(queue: 0)
                result.deviceSeconds += now() - before
                registers.acknowledgeInterrupt()
                let completed = try driver.takeUsed { head, length in
                    let slot = Int(head) / 3
                    guard Int(head) % 3 == 0, slot < depth else { throw BenchError("used head \(head) was never made available") }
                    let expected = write ? 1 : UInt32(size) + 1
                    guard length == expected else { throw BenchError("request \(slot): used length \(length), expected \(expected)") }
                    let status = try memory.read(UInt8.self, at: GuestAddress(BlockBench.statusBase + UInt64(slot) * 16))
                    guard status == 0 else { throw BenchError("request \(slot) at offset \(offsets[slot]): status \(status)") }
                    if !write {
                        let data = BlockBench.dataBase + UInt64(slot) * BlockBench.dataSlot
                        for position in stride(from: 0, to: size, by: BlockBench.stampInterval) {
                            let stamp = try memory.read(UInt64.self, at: GuestAddress(data + UInt64(position)))
                            guard stamp == offsets[slot] + UInt64(position) else {
                                throw BenchError("read at \(offsets[slot]) returned the block stamped \(stamp)")
                            }
                        }
                    }
                }
                guard completed == depth else { throw BenchError("\(completed) of \(depth) requests completed") }
                result.requests += depth
                result.seconds = now() - start
            } while result.seconds < duration
            result.interrupts = interrupts.value.load(ordering: .relaxed) - interruptsBefore
            guard result.interrupts > 0 else { throw BenchError("no interrupt was raised") }
            return result
        }

        _ = try run(for: warmUp)
        if write { sync() }
        var row = ResultRow(device: "blk", test: "\(write ? "write" : "read") \(size >> 10) KiB random, QD \(depth)",
                            mebibytesPerSecond: [], operationsPerSecond: [], deviceShare: [])
        for _ in 0..<runs {
            let result = try run(for: seconds)
            if write { sync() }
            row.mebibytesPerSecond.append(Double(result.requests * size) / result.seconds / 1_048_576)
            row.operationsPerSecond.append(Double(result.requests) / result.seconds)
            row.deviceShare?.append(result.deviceSeconds / result.seconds)
        }
        registers.reset()
        return row
    }
}

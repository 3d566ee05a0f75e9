import Foundation
import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver

/// A class: each test gets a fresh instance, and its deinit removes that test's image.
@Suite final class BlockDeviceTests {
    let memory: GuestMemory
    let imagePath: String
    let image: [UInt8]

    init() throws {
        memory = try MockDriver.makeMemory()
        imagePath = FileManager.default.temporaryDirectory.appending(path: "kasa-blk-\(UUID().uuidString)").path
        image = (0..<(64 * 512)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try Data(image).write(to: URL(filePath: imagePath))
    }

    deinit { try? FileManager.default.removeItem(atPath: imagePath) }

    func attach(readOnly: Bool = false) throws -> (BlockDevice, MockDriver, VirtioMMIOTransport) {
        let device = try BlockDevice(path: imagePath, readOnly: readOnly, identifier: "kasa-disk-0")
        let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        RegisterDriver(transport: transport).initialize(bases: [0x10000])
        return (device, try MockDriver(memory: memory, queue: transport.queues[0]), transport)
    }

    func header(_ type: UInt32, sector: UInt64) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian, Array.init) + [0, 0, 0, 0] + withUnsafeBytes(of: sector.littleEndian, Array.init)
    }

    @Test func reportsCapacityAndFeatures() throws {
        let (device, _, _) = try attach(readOnly: true)
        #expect(device.readConfiguration(offset: 0, count: 8) == [64, 0, 0, 0, 0, 0, 0, 0])
        #expect(device.deviceFeatures & (1 << 5) != 0)
        #expect(device.readConfiguration(offset: 60, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func readsSectors() throws {
        let (_, mock, transport) = try attach()
        let (_, addresses) = try mock.add([.readable(header(0, sector: 2)), .writable(1024), .writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [1025])
        #expect(try mock.read(addresses[1], 1024) == Array(image[1024..<2048]))
        #expect(try mock.read(addresses[2], 1) == [0])
    }

    @Test func writesAndFlushesSectors() throws {
        let (_, mock, transport) = try attach()
        let payload = [UInt8](repeating: 0xAB, count: 512)
        let (_, writeAddresses) = try mock.add([.readable(header(1, sector: 63)), .readable(payload), .writable(1)])
        let (_, flushAddresses) = try mock.add([.readable(header(4, sector: 0)), .writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [1, 1])
        #expect(try mock.read(writeAddresses[2], 1) == [0])
        #expect(try mock.read(flushAddresses[1], 1) == [0])
        let onDisk = try [UInt8](Data(contentsOf: URL(filePath: imagePath)))
        #expect(Array(onDisk[(63 * 512)...]) == payload)
    }

    @Test func readOnlyRefusesWrites() throws {
        let (_, mock, transport) = try attach(readOnly: true)
        let (_, addresses) = try mock.add([.readable(header(1, sector: 0)), .readable([UInt8](repeating: 1, count: 512)), .writable(1)])
        transport.notify(queue: 0)
        _ = try mock.takeUsed()
        #expect(try mock.read(addresses[2], 1) == [1])
        #expect(try [UInt8](Data(contentsOf: URL(filePath: imagePath))) == image)
    }

    @Test func outOfRangeAndPartialSectorsAreIOErrors() throws {
        let (_, mock, transport) = try attach()
        let (_, beyond) = try mock.add([.readable(header(0, sector: 64)), .writable(512), .writable(1)])
        let (_, straddling) = try mock.add([.readable(header(0, sector: 63)), .writable(1024), .writable(1)])
        let (_, partial) = try mock.add([.readable(header(0, sector: 0)), .writable(100), .writable(1)])
        let (_, overflow) = try mock.add([.readable(header(0, sector: UInt64.max)), .writable(512), .writable(1)])
        transport.notify(queue: 0)
        _ = try mock.takeUsed()
        for addresses in [beyond, straddling, partial, overflow] {
            #expect(try mock.read(addresses[2], 1) == [1])
        }
    }

    /// The limits the device advertises (size_max 1 MiB per buffer, seg_max 126 buffers)
    /// are enforced: a request beyond them fails even where the image has room for it.
    @Test func requestsBeyondTheAdvertisedSegmentLimitsAreIOErrors() throws {
        let bigMemory = try MockDriver.makeMemory(megabytes: 16)
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-blk-big-\(UUID().uuidString)").path
        try #require(FileManager.default.createFile(atPath: path, contents: nil), "cannot create \(path)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let handle = try FileHandle(forWritingTo: URL(filePath: path))
        try handle.truncate(atOffset: 8 << 20)
        try handle.close()
        let device = try BlockDevice(path: path, readOnly: false)
        let transport = VirtioMMIOTransport(device: device, memory: bigMemory, raiseInterrupt: {})
        // A 256-entry queue (the device's maximum): the longest chains below need 129 descriptors.
        RegisterDriver(transport: transport).initialize(queueSize: 256, bases: [0x10000])
        let mock = try MockDriver(memory: bigMemory, queue: transport.queues[0], size: 256)
        let megabyte = 1 << 20
        let (_, oversized) = try mock.add([.readable(header(0, sector: 0)), .writable(megabyte + 512), .writable(1)])
        let (_, atTheLimit) = try mock.add([.readable(header(0, sector: 0)), .writable(megabyte), .writable(megabyte), .writable(1)])
        let (_, tooMany) = try mock.add([.readable(header(0, sector: 0))] + Array(repeating: .writable(512), count: 127) + [.writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [1, UInt32(2 * megabyte + 1), 1])
        #expect(try mock.read(oversized[2], 1) == [1], "a buffer over size_max")
        #expect(try mock.read(atTheLimit[3], 1) == [0], "two buffers of exactly size_max")
        #expect(try mock.read(tooMany[128], 1) == [1], "more buffers than seg_max")
        let (_, enough) = try mock.add([.readable(header(0, sector: 0))] + Array(repeating: .writable(512), count: 126) + [.writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [126 * 512 + 1])
        #expect(try mock.read(enough[127], 1) == [0], "seg_max buffers")
    }

    @Test func getIDAndUnknownRequests() throws {
        let (_, mock, transport) = try attach()
        let (_, id) = try mock.add([.readable(header(8, sector: 0)), .writable(20), .writable(1)])
        let (_, unknown) = try mock.add([.readable(header(99, sector: 0)), .writable(1)])
        let (_, short) = try mock.add([.readable([1, 2, 3]), .writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [21, 1, 1])
        #expect(try mock.read(id[1], 11) == Array("kasa-disk-0".utf8))
        #expect(try mock.read(unknown[1], 1) == [2])
        #expect(try mock.read(short[1], 1) == [1])
    }

    @Test func backingFilesMustBeUsable() {
        #expect(throws: BlockDeviceError.self) { try BlockDevice(path: "/nonexistent/disk.img", readOnly: false) }
        let odd = FileManager.default.temporaryDirectory.appending(path: "kasa-odd-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: odd, contents: Data([1, 2, 3]))
        defer { try? FileManager.default.removeItem(atPath: odd) }
        #expect(throws: BlockDeviceError.sizeNotSectorMultiple(path: odd, size: 3)) { try BlockDevice(path: odd, readOnly: true) }
    }
}

@Suite struct BlockDeviceFuzzTests {
    /// Random request headers and chain shapes from a seeded generator: every request must
    /// complete (used entry written) and the image must only change through valid writes.
    @Test func randomRequestsNeverCrashOrEscapeTheImage() throws {
        let memory = try MockDriver.makeMemory()
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-blk-fuzz-\(UUID().uuidString)").path
        try Data(count: 16 * 512).write(to: URL(filePath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let device = try BlockDevice(path: path, readOnly: false)
        let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        RegisterDriver(transport: transport).initialize(bases: [0x10000])
        let mock = try MockDriver(memory: memory, queue: transport.queues[0])
        var state: UInt64 = 0xb10c
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
        var completed = 0
        for round in 0..<3000 {
            var header = [UInt8](repeating: 0, count: Int(next() % 24))
            for index in header.indices { header[index] = UInt8(truncatingIfNeeded: next()) }
            if round % 3 == 0, header.count >= 16 {
                header[0] = UInt8(next() % 10)  // often a valid type
                header[1...3] = [0, 0, 0]
                header[8] = UInt8(next() % 20)
                header[9...15] = [0, 0, 0, 0, 0, 0, 0]
            }
            var buffers: [MockDriver.Buffer] = [.readable(header)]
            for _ in 0..<Int(next() % 3) {
                buffers.append(next() % 2 == 0 ? .readable([UInt8](repeating: 0x5A, count: Int(next() % 1100))) : .writable(Int(next() % 1100)))
            }
            // Keep readable buffers before writable ones, as a conforming driver does.
            buffers.sort { !$0.writable && $1.writable }
            buffers.append(.writable(Int(next() % 2)))
            try mock.add(buffers)
            transport.notify(queue: 0)
            completed += try mock.takeUsed().count
        }
        #expect(completed == 3000)
        #expect(try Data(contentsOf: URL(filePath: path)).count == 16 * 512)
    }
}

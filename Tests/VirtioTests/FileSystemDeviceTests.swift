import Foundation
import GuestMemory
@testable import SharedFileSystem
import Testing
@testable import Virtio
import VirtioMockDriver

/// virtio-fs through its virtio-mmio transport, the mock driver playing the Linux virtiofs
/// driver: requests and replies split across buffers the way the driver may split them,
/// data moved straight between files and guest buffers, malformed chains.
@Suite struct FileSystemDeviceTests {
    let memory: GuestMemory
    let directory: String
    let device: FileSystemDevice
    let transport: VirtioMMIOTransport
    let registers: RegisterDriver
    let hiprio: MockDriver
    let requests: MockDriver
    private var unique: UInt64 = 0

    init() throws {
        memory = try MockDriver.makeMemory()
        directory = try HostSupport.makeTemporaryDirectory(prefix: "/tmp/kasa-fsdev-")
        device = try FileSystemDevice(tag: "kataShared", directory: directory, workers: 2)
        transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        registers = RegisterDriver(transport: transport)
        hiprio = MockDriver(memory: memory, size: 16, base: 0x10000)
        requests = MockDriver(memory: memory, size: 16, base: 0x200000)
        registers.initialize(drivers: [hiprio, requests])
    }

    func header(_ opcode: FUSEOpcode, node: UInt64, unique: UInt64, argumentLength: Int) -> [UInt8] {
        FUSEInHeader(length: UInt32(FUSE.inHeaderSize + argumentLength), opcode: opcode.rawValue, unique: unique, nodeID: node).encoded
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

    /// Waits for the workers to hand `count` chains back on `driver`'s queue.
    func used(_ driver: MockDriver, count: Int = 1) throws -> [(head: UInt16, length: UInt32)] {
        var seen: [(head: UInt16, length: UInt32)] = []
        let deadline = Date().addingTimeInterval(10)
        while seen.count < count, Date() < deadline {
            seen += try driver.takeUsed()
            if seen.count < count { usleep(1000) }
        }
        return seen
    }

    func initialize() throws {
        let arguments = Self.le(UInt32(7)) + Self.le(UInt32(37)) + Self.le(UInt32(0)) + Self.le(UInt32(0)) + [UInt8](repeating: 0, count: 48)
        let (_, addresses) = try requests.add([.readable(header(.`init`, node: 0, unique: 1, argumentLength: arguments.count) + arguments),
                                               .writable(FUSE.outHeaderSize + FUSE.initOutSize)])
        registers.notify(queue: 1)
        #expect(try used(requests).map(\.length) == [UInt32(FUSE.outHeaderSize + FUSE.initOutSize)])
        let reply = try FUSEOutHeader(try requests.read(addresses[1], FUSE.outHeaderSize))
        #expect(reply.error == 0 && reply.unique == 1)
    }

    /// LOOKUP of a new file "f" (unique 2), answered: the guest then holds one node.
    func lookUpAFile() throws {
        #expect(FileManager.default.createFile(atPath: directory + "/f", contents: nil))
        let name = Array("f".utf8) + [0]
        _ = try requests.add([.readable(header(.lookup, node: FUSE.rootNodeID, unique: 2, argumentLength: name.count) + name),
                              .writable(FUSE.outHeaderSize + FUSE.entryOutSize)])
        registers.notify(queue: 1)
    }

    @Test func configurationSpaceCarriesTheTagAndOneRequestQueue() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(registers.read(0x008) == 26, "device ID")
        let tag = (0..<36).map { device.readConfiguration(offset: $0, count: 1)[0] }
        #expect(Array(tag.prefix(10)) == Array("kataShared".utf8) && tag[10...].allSatisfy { $0 == 0 })
        #expect(device.readConfiguration(offset: 36, count: 4) == [1, 0, 0, 0])
        #expect(throws: FileSystemDeviceError.self) { try FileSystemDevice(tag: String(repeating: "t", count: 37), directory: directory) }
        #expect(throws: FileSystemDeviceError.self) { try FileSystemDevice(tag: "t", directory: directory + "/missing") }
    }

    @Test func aLookupSplitAcrossBuffersIsAnsweredAcrossBuffers() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        FileManager.default.createFile(atPath: directory + "/hello", contents: Data("hi".utf8))
        let name = Array("hello".utf8) + [0]
        let request = header(.lookup, node: FUSE.rootNodeID, unique: 2, argumentLength: name.count) + name
        // The header cut after 20 bytes, the reply's header after 10.
        let (_, addresses) = try requests.add([.readable(Array(request[0..<20])), .readable(Array(request[20...])),
                                               .writable(10), .writable(FUSE.outHeaderSize - 10 + FUSE.entryOutSize)])
        registers.notify(queue: 1)
        #expect(try used(requests).map(\.length) == [UInt32(FUSE.outHeaderSize + FUSE.entryOutSize)])
        let reply = try requests.read(addresses[2], 10) + requests.read(addresses[3], FUSE.outHeaderSize - 10 + FUSE.entryOutSize)
        let parsed = try FUSEOutHeader(Array(reply.prefix(FUSE.outHeaderSize)))
        #expect(parsed.error == 0 && parsed.unique == 2 && Int(parsed.length) == reply.count)
        let size = reply[(FUSE.outHeaderSize + 48)..<(FUSE.outHeaderSize + 56)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(size == 2, "the entry's attributes")
    }

    @Test func writeAndReadMoveDataBetweenTheFileAndSplitGuestBuffers() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        let name = Array("data".utf8) + [0]
        let create = Self.le(UInt32(2)) + Self.le(UInt32(0o100644)) + Self.le(UInt32(0)) + Self.le(UInt32(0)) + name
        let (_, created) = try requests.add([.readable(header(.create, node: FUSE.rootNodeID, unique: 2, argumentLength: create.count) + create),
                                             .writable(FUSE.outHeaderSize + FUSE.entryOutSize + FUSE.openOutSize)])
        registers.notify(queue: 1)
        #expect(try used(requests).count == 1)
        let createReply = try requests.read(created[1], FUSE.outHeaderSize + FUSE.entryOutSize + FUSE.openOutSize)
        let node = createReply[16..<24].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let handle = createReply[(16 + FUSE.entryOutSize)..<(24 + FUSE.entryOutSize)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }

        let payload = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let write = Self.le(handle) + Self.le(UInt64(100)) + Self.le(UInt32(payload.count)) + [UInt8](repeating: 0, count: 20)
        // The payload in three buffers of odd sizes.
        _ = try requests.add([.readable(header(.write, node: node, unique: 3, argumentLength: write.count + payload.count) + write),
                              .readable(Array(payload[0..<999])), .readable(Array(payload[999..<5000])), .readable(Array(payload[5000...])),
                              .writable(FUSE.outHeaderSize + 8)])
        registers.notify(queue: 1)
        #expect(try used(requests).map(\.length) == [UInt32(FUSE.outHeaderSize + 8)])
        let onDisk = try [UInt8](Data(contentsOf: URL(filePath: directory + "/data")))
        #expect(onDisk.count == 10_100 && Array(onDisk[100...]) == payload)

        let read = Self.le(handle) + Self.le(UInt64(100)) + Self.le(UInt32(payload.count)) + [UInt8](repeating: 0, count: 20)
        // The reply header and the first 7 data bytes share a buffer; the rest in two more.
        let (_, addresses) = try requests.add([.readable(header(.read, node: node, unique: 4, argumentLength: read.count) + read),
                                               .writable(FUSE.outHeaderSize + 7), .writable(4000), .writable(6000)])
        registers.notify(queue: 1)
        #expect(try used(requests).map(\.length) == [UInt32(FUSE.outHeaderSize + payload.count)])
        let data = try requests.read(addresses[1] + UInt64(FUSE.outHeaderSize), 7) + requests.read(addresses[2], 4000)
            + requests.read(addresses[3], 6000)
        #expect(Array(data.prefix(payload.count)) == payload)
    }

    @Test func forgetOnTheHighPriorityQueueHasNoReply() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        try lookUpAFile()
        #expect(try used(requests).count == 1)
        #expect(device.server.counts.nodes == 1)
        let forget = Self.le(UInt64(1))
        _ = try hiprio.add([.readable(header(.forget, node: 2, unique: 3, argumentLength: forget.count) + forget)])
        registers.notify(queue: 0)
        #expect(try used(hiprio).map(\.length) == [0])
        #expect(device.server.counts.nodes == 0)
    }

    @Test func aChainWithoutRoomForTheReplyBreaksTheQueue() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        _ = try requests.add([.readable(header(.getattr, node: FUSE.rootNodeID, unique: 2, argumentLength: 16) + [UInt8](repeating: 0, count: 16)),
                              .writable(8)])
        registers.notify(queue: 1)
        let deadline = Date().addingTimeInterval(10)
        while registers.read(0x070) & 64 == 0, Date() < deadline { usleep(1000) }
        #expect(registers.read(0x070) & 64 != 0, "DEVICE_NEEDS_RESET")
        #expect(device.malformedRequests == 1 && transport.queueErrors == 1)
        #expect(try requests.takeUsed().isEmpty, "not handed back as if answered")
        registers.reset()
        #expect(device.server.counts.nodes == 0)
    }

    /// Arguments beyond 64 KiB + 4 KiB (a WRITE's data aside) are refused with E2BIG,
    /// never read into kasa-vmm.
    @Test func anOversizedRequestIsRefusedNotRead() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        let value = [UInt8](repeating: 7, count: 70_000)
        let arguments = Self.le(UInt32(value.count)) + Self.le(UInt32(0)) + Array("user.big".utf8) + [0] + value
        let (_, addresses) = try requests.add([.readable(header(.setxattr, node: FUSE.rootNodeID, unique: 2, argumentLength: arguments.count)),
                                               .readable(arguments), .writable(FUSE.outHeaderSize)])
        registers.notify(queue: 1)
        #expect(try used(requests).map(\.length) == [UInt32(FUSE.outHeaderSize)])
        let reply = try FUSEOutHeader(try requests.read(addresses[2], FUSE.outHeaderSize))
        #expect(reply.error == -E2BIG && reply.unique == 2)
        #expect(device.malformedRequests == 0, "a well-formed chain asking too much is an error reply, not a broken queue")
    }

    /// A template VM's guest has probed the device but never mounted it: that device holds
    /// nothing of the host and may be saved. Once the guest has a FUSE session (INIT), the
    /// nodes it holds are host descriptors a snapshot cannot keep; after a reset it can again.
    @Test func aProbedDeviceMaySnapshotAMountedOneMayNot() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(transport.inspect { device.snapshotObstacle } == nil, "a device only probed refused the snapshot")
        try initialize()
        #expect(transport.inspect { device.snapshotObstacle }?.contains("mounted") == true)
        registers.reset()
        #expect(transport.inspect { device.snapshotObstacle } == nil, "a reset device still refused the snapshot")
    }

    /// A template's device, probed but never mounted, restored into a clone's device that
    /// serves another directory: the guest's first INIT and LOOKUP after the restore reach
    /// the clone's directory through the rings the template's driver set up.
    @Test func aProbedDeviceRestoredElsewhereServesTheClonesDirectory() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let saved = transport.captureState()
        let cloneDirectory = try HostSupport.makeTemporaryDirectory(prefix: "/tmp/kasa-fsclone-")
        defer { try? FileManager.default.removeItem(atPath: cloneDirectory) }
        #expect(FileManager.default.createFile(atPath: cloneDirectory + "/clone-only", contents: nil))
        let clone = try FileSystemDevice(tag: "kataShared", directory: cloneDirectory, workers: 2)
        let cloneTransport = VirtioMMIOTransport(device: clone, memory: memory, raiseInterrupt: {})
        try cloneTransport.restore(saved)
        let cloneRegisters = RegisterDriver(transport: cloneTransport)
        let arguments = Self.le(UInt32(7)) + Self.le(UInt32(37)) + Self.le(UInt32(0)) + Self.le(UInt32(0)) + [UInt8](repeating: 0, count: 48)
        _ = try requests.add([.readable(header(.`init`, node: 0, unique: 1, argumentLength: arguments.count) + arguments),
                              .writable(FUSE.outHeaderSize + FUSE.initOutSize)])
        cloneRegisters.notify(queue: 1)
        #expect(try used(requests).count == 1)
        let name = Array("clone-only".utf8) + [0]
        let (_, addresses) = try requests.add([.readable(header(.lookup, node: FUSE.rootNodeID, unique: 2, argumentLength: name.count) + name),
                                               .writable(FUSE.outHeaderSize + FUSE.entryOutSize)])
        cloneRegisters.notify(queue: 1)
        #expect(try used(requests).count == 1)
        #expect(try FUSEOutHeader(try requests.read(addresses[1], FUSE.outHeaderSize)).error == 0, "the clone's file was not found")
        #expect(clone.server.counts.nodes == 1 && device.server.counts.nodes == 0, "the template's device served the clone's guest")
    }

    /// A request a worker holds (here: waiting for the export's lock, which the test holds)
    /// keeps the device out of a snapshot: its reply would land in guest memory after the
    /// snapshot read it. (Bounded: an obstacle that asked the export first would wait for
    /// the lock the test holds. Generously: in the full suite a test may wait minutes for a
    /// thread of the test runner's pool while VM tests hold them.)
    @Test(.timeLimit(.minutes(10))) func aRequestBeingServedKeepsTheDeviceOutOfASnapshot() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        try device.server.state.withLock { _ in
            try lookUpAFile()
            #expect(transport.inspect { device.snapshotObstacle }?.contains("1 request(s) unanswered") == true)
        }
        #expect(try used(requests).count == 1)
        #expect(transport.inspect { device.snapshotObstacle }?.contains("mounted") == true)
    }

    @Test func aResetForgetsEverythingTheGuestHeld() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try initialize()
        try lookUpAFile()
        #expect(try used(requests).count == 1 && device.server.counts.nodes == 1)
        registers.reset()
        #expect(device.server.counts.nodes == 0)
        // After a new set-up the driver must INIT again.
        try requests.resetRings()
        try hiprio.resetRings()
        registers.initialize(drivers: [hiprio, requests])
        let name = Array("f".utf8) + [0]
        let (_, addresses) = try requests.add([.readable(header(.lookup, node: FUSE.rootNodeID, unique: 3, argumentLength: name.count) + name),
                                               .writable(FUSE.outHeaderSize + FUSE.entryOutSize)])
        registers.notify(queue: 1)
        #expect(try used(requests).count == 1)
        #expect(try FUSEOutHeader(try requests.read(addresses[1], FUSE.outHeaderSize)).error == -EIO)
    }
}

import Foundation
import GuestMemory
import HostOS
import Testing
@testable import Virtio
import VirtioMockDriver
#if canImport(Glibc)
import Glibc
#endif

/// The guest's side: the transport with the net device, two MockDriver queues (receive
/// 0, transmit 1) and a running event loop, as the VMM has them.
final class NetHarness {
    static let mac = MACAddress("02:42:0a:58:07:02")!
    let memory: GuestMemory
    let backend: SocketPairBackend
    let loopThread: EventLoopThread
    let device: NetDevice
    let transport: VirtioMMIOTransport
    let registers: RegisterDriver
    let receive: MockDriver
    let transmit: MockDriver

    init(mtu: UInt16 = 1500, activate: Bool = true, features: UInt64 = VirtioFeature.version1) throws {
        memory = try MockDriver.makeMemory()
        backend = try SocketPairBackend()
        loopThread = try EventLoopThread()
        device = try NetDevice(backend: backend, mac: NetHarness.mac, mtu: mtu, eventLoop: loopThread.loop)
        transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        registers = RegisterDriver(transport: transport)
        receive = MockDriver(memory: memory, size: 16, base: 0x10000)
        transmit = MockDriver(memory: memory, size: 16, base: 0x110000)
        if activate { registers.initialize(features: features, drivers: [receive, transmit]) }
    }

    deinit { loopThread.stop() }

    /// A frame: Ethernet header (to our MAC, from another, IPv4) and `payload`.
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        mac.bytes + [0x02, 0, 0, 0, 0, 1] + [0x08, 0x00] + payload
    }

    /// Waits until the receive queue returns `count` used entries.
    func receivedEntries(_ count: Int, seconds: Double = 2) throws -> [(head: UInt16, length: UInt32)] {
        var entries: [(head: UInt16, length: UInt32)] = []
        let deadline = Date().addingTimeInterval(seconds)
        while entries.count < count && Date() < deadline {
            entries += try receive.takeUsed()
            if entries.count < count { usleep(1000) }
        }
        return entries
    }
}

@Suite(.timeLimit(.minutes(1))) struct NetDeviceTests {
    @Test func offersMACMTUAndLinkStatusInItsConfigSpace() throws {
        let harness = try NetHarness(mtu: 1450)
        #expect(harness.device.deviceType == 1)
        #expect(harness.device.deviceFeatures & (NetDevice.Feature.mac | NetDevice.Feature.mtu | NetDevice.Feature.status)
                == NetDevice.Feature.mac | NetDevice.Feature.mtu | NetDevice.Feature.status)
        #expect(harness.device.readConfiguration(offset: 0, count: 6) == NetHarness.mac.bytes)
        #expect(harness.device.readConfiguration(offset: 6, count: 2) == [1, 0], "link up")
        #expect(harness.device.readConfiguration(offset: 10, count: 2) == [0xAA, 0x05], "MTU 1450, little-endian")
        #expect(harness.device.readConfiguration(offset: 4096, count: 4) == [0, 0, 0, 0], "past the end reads zero")
        #expect(harness.device.readConfiguration(offset: Int.max, count: 2) == [0, 0], "an offset that would overflow reads zero")
    }

    @Test func aGuestFrameReachesTheBackendWithItsHeader() throws {
        let harness = try NetHarness()
        let frame = NetHarness.frame(Array(0..<200).map { UInt8($0) })
        var header = [UInt8](repeating: 0, count: NetDevice.headerSize)
        header[0] = 0  // no checksum offload requested
        // Header and frame in separate buffers, the frame itself split in two, as Linux may post it.
        try harness.transmit.add([.readable(header), .readable(Array(frame.prefix(50))), .readable(Array(frame.dropFirst(50)))])
        harness.registers.notify(queue: 1)
        let sent = try #require(harness.backend.receive(), "nothing reached the backend")
        #expect(sent == header + frame)
        #expect(try harness.transmit.takeUsed().map(\.length) == [0], "the chain comes back, nothing written into it")
        #expect(harness.device.counters.transmitted == 1)
        #expect(harness.registers.acknowledgeInterrupt() == 1, "the driver is interrupted for the used chain")
    }

    @Test func aBackendFrameLandsInTheGuestsReceiveBuffer() throws {
        let harness = try NetHarness()
        let (head, addresses) = try harness.receive.add([.writable(NetDevice.headerSize + 1514)])
        harness.registers.notify(queue: 0)
        let frame = NetHarness.frame(Array(repeating: 0xAB, count: 300))
        harness.backend.send(frame)
        let used = try harness.receivedEntries(1)
        #expect(used.map(\.head) == [head])
        #expect(used.first?.length == UInt32(NetDevice.headerSize + frame.count))
        let bytes = try harness.receive.read(addresses[0], NetDevice.headerSize + frame.count)
        #expect(Array(bytes.dropFirst(NetDevice.headerSize)) == frame)
        #expect(bytes[10] == 1 && bytes[11] == 0, "num_buffers is 1 without mergeable buffers")
        #expect(harness.device.counters.received == 1)
    }

    /// Frames that arrive while the guest has posted no buffer wait in the backend (it is
    /// not polled meanwhile), and go in once the driver posts buffers and notifies.
    @Test func framesWaitForReceiveBuffersAndFlowOnTheNotify() throws {
        let harness = try NetHarness()
        let frames = (0..<3).map { NetHarness.frame([UInt8]("frame \($0)".utf8)) }
        for frame in frames { harness.backend.send(frame) }
        usleep(100_000)
        #expect(try harness.receive.takeUsed().isEmpty)
        #expect(harness.device.counters.received == 0 && harness.device.counters.dropped == 0, "nothing was read without a buffer")
        var addresses: [UInt64] = []
        for _ in frames { addresses += try harness.receive.add([.writable(NetDevice.headerSize + 1514)]).addresses }
        harness.registers.notify(queue: 0)
        let used = try harness.receivedEntries(3)
        #expect(used.count == 3)
        for (index, frame) in frames.enumerated() where index < used.count {
            let bytes = try harness.receive.read(addresses[index], NetDevice.headerSize + frame.count)
            #expect(Array(bytes.dropFirst(NetDevice.headerSize)) == frame, "frame \(index) in order")
        }
        // One buffer left for two frames: the first goes in, the second waits for the next buffer.
        let (_, late) = try harness.receive.add([.writable(NetDevice.headerSize + 1514)])
        harness.registers.notify(queue: 0)
        harness.backend.send(NetHarness.frame([1]))
        harness.backend.send(NetHarness.frame([2]))
        #expect(try harness.receivedEntries(1).count == 1)
        #expect(try harness.receive.read(late[0] + UInt64(NetDevice.headerSize + 14), 1) == [1])
        let (_, last) = try harness.receive.add([.writable(NetDevice.headerSize + 1514)])
        harness.registers.notify(queue: 0)
        #expect(try harness.receivedEntries(1).count == 1)
        #expect(try harness.receive.read(last[0] + UInt64(NetDevice.headerSize + 14), 1) == [2])
    }

    /// A guest that posts a receive buffer smaller than a frame: the device never writes
    /// past the buffer, and later frames still arrive.
    @Test func aSmallReceiveBufferIsNeverOverrun() throws {
        let harness = try NetHarness()
        let (_, small) = try harness.receive.add([.writable(64)])
        let guard_ = small[0] + 64
        try harness.memory.fill(0xEE, at: GuestAddress(guard_), count: 64)
        harness.registers.notify(queue: 0)
        harness.backend.send(NetHarness.frame(Array(repeating: 7, count: 1000)))
        let used = try harness.receivedEntries(1)
        #expect(used.count == 1 && used[0].length <= 64, "\(used)")
        #expect(try harness.receive.read(guard_, 64) == [UInt8](repeating: 0xEE, count: 64), "bytes past the buffer were written")
        let (_, big) = try harness.receive.add([.writable(NetDevice.headerSize + 1514)])
        harness.registers.notify(queue: 0)
        harness.backend.send(NetHarness.frame([9, 9]))
        #expect(try harness.receivedEntries(1).count == 1)
        #expect(try harness.receive.read(big[0] + UInt64(NetDevice.headerSize + 14), 2) == [9, 9])
    }

    /// Chains no frame can be: too short for a header and a frame, longer than the MTU
    /// allows, a receive buffer too small for the header, a buffer outside guest memory.
    /// Each is counted and returned (or stops the queue), never sent, never a crash.
    @Test func malformedChainsAreCountedNotSent() throws {
        let harness = try NetHarness(mtu: 1500)
        try harness.transmit.add([.readable([UInt8](repeating: 0, count: NetDevice.headerSize))])
        try harness.transmit.add([.readable([UInt8](repeating: 0, count: NetDevice.headerSize + 1500 + 18 + 1))])
        harness.registers.notify(queue: 1)
        #expect(harness.backend.receive(seconds: 0.2) == nil, "a malformed frame reached the backend")
        #expect(try harness.transmit.takeUsed().count == 2, "both chains are returned to the driver")
        #expect(harness.device.counters.malformed == 2 && harness.device.counters.transmitted == 0)

        try harness.receive.add([.writable(4)])
        harness.registers.notify(queue: 0)
        #expect(try harness.receivedEntries(1).map(\.length) == [0])
        #expect(harness.device.counters.malformed == 3)

        // A descriptor pointing past guest memory: the queue refuses the chain.
        try harness.transmit.writeDescriptor(5, address: harness.memory.totalSize - 8, length: 64, flags: 0, next: 0)
        try harness.transmit.makeAvailable(5)
        harness.registers.notify(queue: 1)
        #expect(harness.backend.receive(seconds: 0.2) == nil)
        #expect(harness.device.counters.malformed == 4)
    }

    /// The offloads a TAP gives for free: a driver that accepts host TSO may hand over a
    /// segment larger than the MTU (the host kernel segments it), and the TAP is told which
    /// receive offloads the driver accepted, and told again (none) when the driver resets.
    @Test func offloadsFollowWhatTheDriverAccepted() throws {
        typealias Feature = NetDevice.Feature
        let all = VirtioFeature.version1 | Feature.checksum | Feature.hostTSO4 | Feature.hostTSO6
            | Feature.guestChecksum | Feature.guestTSO4 | Feature.guestTSO6 | Feature.guestECN
        let harness = try NetHarness(features: all)
        #expect(harness.backend.offloads.last == 0x0F, "csum, TSO4, TSO6 and ECN for the receive side: \(harness.backend.offloads)")
        var header = [UInt8](repeating: 0, count: NetDevice.headerSize)
        header[0] = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
        header[1] = 1  // VIRTIO_NET_HDR_GSO_TCPV4
        let segment = NetHarness.frame([UInt8](repeating: 0x5A, count: 20_000))
        try harness.transmit.add([.readable(header), .readable(segment)])
        harness.registers.notify(queue: 1)
        let sent = try #require(harness.backend.receive(), "the large segment did not reach the backend")
        #expect(sent == header + segment, "header and segment pass unchanged")
        #expect(harness.device.counters.transmitted == 1 && harness.device.counters.malformed == 0)
        harness.registers.reset()
        #expect(harness.backend.offloads.last == 0)

        // Receive offloads need the checksum one: TSO alone enables nothing; without host
        // TSO a frame over the MTU is malformed, as before.
        #expect(NetDevice.tapOffloads(forAccepted: Feature.guestTSO4 | Feature.guestTSO6) == 0)
        #expect(NetDevice.tapOffloads(forAccepted: Feature.guestChecksum) == 0x01)
        #expect(NetDevice.tapOffloads(forAccepted: Feature.guestChecksum | Feature.guestECN) == 0x01, "ECN only with TSO")
        let plain = try NetHarness(features: VirtioFeature.version1 | Feature.checksum)
        #expect(plain.backend.offloads.last == 0)
        try plain.transmit.add([.readable(header), .readable(segment)])
        plain.registers.notify(queue: 1)
        #expect(plain.backend.receive(seconds: 0.2) == nil)
        #expect(plain.device.counters.malformed == 1)
    }

    /// After the driver resets the device, frames stay in the backend until it is set up
    /// again; then they flow as before.
    @Test func aResetStopsReceivingUntilTheNextSetUp() throws {
        let harness = try NetHarness()
        harness.registers.reset()
        harness.backend.send(NetHarness.frame([5]))
        usleep(100_000)
        #expect(harness.device.counters.received == 0)
        try harness.receive.resetRings()
        try harness.transmit.resetRings()
        harness.registers.initialize(drivers: [harness.receive, harness.transmit])
        let (_, addresses) = try harness.receive.add([.writable(NetDevice.headerSize + 1514)])
        harness.registers.notify(queue: 0)
        #expect(try harness.receivedEntries(1).count == 1)
        #expect(try harness.receive.read(addresses[0] + UInt64(NetDevice.headerSize + 14), 1) == [5])
    }

    /// Mergeable receive buffers (what Linux takes when offered): a frame larger than one
    /// buffer spans several chains in order, the first header's num_buffers says how many,
    /// and buffers a frame did not reach stay for the next frame.
    @Test func aFrameSpansMergeableBuffersAndLeavesTheRestForTheNext() throws {
        let harness = try NetHarness(features: VirtioFeature.version1 | NetDevice.Feature.mergeableReceiveBuffers)
        var buffers: [(head: UInt16, address: UInt64)] = []
        for _ in 0..<4 {
            let (head, addresses) = try harness.receive.add([.writable(1000)])
            buffers.append((head, addresses[0]))
        }
        harness.registers.notify(queue: 0)
        let large = NetHarness.frame((0..<1386).map { UInt8(truncatingIfNeeded: $0) })
        harness.backend.send(large)
        let spanned = try harness.receivedEntries(2)
        #expect(spanned.map(\.head) == [buffers[0].head, buffers[1].head])
        #expect(spanned.map(\.length) == [1000, UInt32(NetDevice.headerSize + large.count - 1000)])
        let first = try harness.receive.read(buffers[0].address, 1000)
        #expect(first[10] == 2 && first[11] == 0, "num_buffers names both chains")
        let rest = try harness.receive.read(buffers[1].address, NetDevice.headerSize + large.count - 1000)
        #expect(Array(first.dropFirst(NetDevice.headerSize)) + rest == large, "the frame, in order across the chains")

        let small = NetHarness.frame([1, 2, 3])
        harness.backend.send(small)
        let next = try harness.receivedEntries(1)
        #expect(next.map(\.head) == [buffers[2].head], "the next frame starts in the first buffer not used")
        let header = try harness.receive.read(buffers[2].address, NetDevice.headerSize + small.count)
        #expect(header[10] == 1 && Array(header.dropFirst(NetDevice.headerSize)) == small)
        #expect(harness.device.counters.received == 2 && harness.device.counters.dropped == 0)
    }

    /// The backend cannot say how large its next frame is, so the device reads only once
    /// the guest has posted room for the largest one (MTU 1500: 1530 bytes with the header);
    /// a frame waits for that, then flows on the driver's notification. The driver is told
    /// (avail_event) to notify on its very next buffer.
    @Test func mergeableReceivingWaitsForRoomForTheLargestFrame() throws {
        let harness = try NetHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIndex
                                     | NetDevice.Feature.mergeableReceiveBuffers)
        let (head, addresses) = try harness.receive.add([.writable(1000)])
        harness.registers.notify(queue: 0)
        let frame = NetHarness.frame([UInt8](repeating: 0x42, count: 100))
        harness.backend.send(frame)
        usleep(100_000)
        #expect(try harness.receive.takeUsed().isEmpty, "1000 bytes cannot hold every frame: nothing is read yet")
        #expect(harness.device.counters.received == 0 && harness.device.counters.dropped == 0)
        let availableEvent = try harness.memory.read(UInt16.self, at: GuestAddress(0x10000 + 0x2000 + 4 + 8 * 16))
        #expect(availableEvent == 1, "avail_event asks for a notification on the driver's next buffer")
        try harness.receive.add([.writable(1000)])
        harness.registers.notify(queue: 0)
        let used = try harness.receivedEntries(1)
        #expect(used.map(\.head) == [head] && used.first?.length == UInt32(NetDevice.headerSize + frame.count))
        #expect(Array(try harness.receive.read(addresses[0], NetDevice.headerSize + frame.count).dropFirst(NetDevice.headerSize)) == frame)
    }

    /// A ring full of buffers too small together for the largest frame (16 of 64 bytes)
    /// still receives: the device takes what the ring holds rather than wait for room the
    /// driver can never post.
    @Test func aFullRingOfSmallMergeableBuffersStillReceives() throws {
        let harness = try NetHarness(features: VirtioFeature.version1 | NetDevice.Feature.mergeableReceiveBuffers)
        var addresses: [UInt64] = []
        for _ in 0..<16 { addresses += try harness.receive.add([.writable(64)]).addresses }
        harness.registers.notify(queue: 0)
        let frame = NetHarness.frame((0..<286).map { UInt8(truncatingIfNeeded: $0) })
        harness.backend.send(frame)
        let total = NetDevice.headerSize + frame.count
        let used = try harness.receivedEntries(5)
        #expect(used.count == 5 && used.map(\.length) == [64, 64, 64, 64, UInt32(total - 256)])
        var bytes: [UInt8] = []
        for (index, entry) in used.enumerated() { bytes += try harness.receive.read(addresses[index], Int(entry.length)) }
        #expect(bytes[10] == 5 && Array(bytes.dropFirst(NetDevice.headerSize)) == frame)
    }

    @Test func badSettingsAreRefused() throws {
        let loop = try EventLoop()
        let backend = try SocketPairBackend()
        #expect(throws: NetDeviceError.self) { try NetDevice(backend: backend, mac: NetHarness.mac, mtu: 60, eventLoop: loop) }
        #expect(throws: NetDeviceError.self) {
            try NetDevice(backend: backend, mac: MACAddress("01:00:5e:00:00:01")!, eventLoop: loop)
        }
        #expect(MACAddress("02:42:0a:58:07") == nil && MACAddress("02:42:0a:58:07:zz") == nil && MACAddress("2:42:a:58:7:2") == nil)
        #expect(MACAddress("02:42:0A:58:07:02")?.description == "02:42:0a:58:07:02")
        let random = MACAddress.random()
        #expect(!random.isMulticast && random.bytes[0] & 2 == 2, "locally administered unicast: \(random)")
        #expect(throws: NetDeviceError.self) { try TapDevice(name: "") }
        #expect(throws: NetDeviceError.self) { try TapDevice(name: String(repeating: "t", count: 16)) }
        #expect(throws: NetDeviceError.self) { try TapDevice(adopting: backend.descriptor) }
        #expect(throws: NetDeviceError.self) { try TapDevice(adopting: 9999) }
    }
}

/// A template's NIC slot: a device with no host network must take whatever the guest
/// sends (handing every chain back, dropping the frames) and never deliver anything.
@Suite(.timeLimit(.minutes(1))) struct UnpluggedNICTests {
    /// A NIC on `backend` whose driver is ready and has posted one receive buffer (so the
    /// device polls its backend).
    static func startedNIC(backend: UnpluggedBackend, loop: EventLoop, memory: GuestMemory) throws
        -> (device: NetDevice, registers: RegisterDriver, receive: MockDriver, transmit: MockDriver) {
        let device = try NetDevice(backend: backend, mac: NetHarness.mac, eventLoop: loop)
        let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        let registers = RegisterDriver(transport: transport)
        let receive = MockDriver(memory: memory, size: 16, base: 0x10000)
        let transmit = MockDriver(memory: memory, size: 16, base: 0x110000)
        registers.initialize(features: VirtioFeature.version1, drivers: [receive, transmit])
        try receive.add([.writable(2048)])
        registers.notify(queue: 0)
        return (device, registers, receive, transmit)
    }

    /// A device that goes while it polls its backend (the driver posted receive buffers)
    /// must take its registration with it: the backend closes the descriptor, and a loop
    /// still watching the number would poll whatever file is opened under it next.
    @Test func aNICThatGoesWhilePollingLeavesNothingWatched() throws {
        let memory = try MockDriver.makeMemory()
        let loopThread = try EventLoopThread()
        defer { loopThread.stop() }
        let number: Int32
        do {
            let backend = try UnpluggedBackend()
            number = backend.descriptor
            let nic = try Self.startedNIC(backend: backend, loop: loopThread.loop, memory: memory)
            #expect(loopThread.loop.isWatching(number), "the device polls its backend while it has receive buffers")
            withExtendedLifetime(nic) {}
        }
        #expect(!loopThread.loop.isWatching(number), "descriptor \(number) is still watched after its device went")
        #expect(loopThread.loop.descriptorsClosedWhileWatched == 0)
    }

    @Test func anUnpluggedNICDropsWhatTheGuestSendsAndReceivesNothing() throws {
        let memory = try MockDriver.makeMemory()
        let loopThread = try EventLoopThread()
        defer { loopThread.stop() }
        let (device, registers, receive, transmit) = try Self.startedNIC(backend: try UnpluggedBackend(), loop: loopThread.loop, memory: memory)
        // Far more than a socket buffer holds: the first frames are queued, the rest dropped.
        let frames = 400
        let frame = [UInt8](repeating: 0, count: NetDevice.headerSize) + NetHarness.frame([UInt8](repeating: 7, count: 1400))
        var returned = 0
        for _ in 0..<frames {
            try transmit.add([.readable(frame)])
            registers.notify(queue: 1)
            let deadline = Date().addingTimeInterval(2)
            var used: [(head: UInt16, length: UInt32)] = []
            while used.isEmpty && Date() < deadline {
                used = try transmit.takeUsed()
                if used.isEmpty { usleep(200) }
            }
            returned += used.count
        }
        #expect(returned == frames, "every transmit chain comes back")
        #expect(device.counters.transmitted + device.counters.dropped == frames)
        #expect(device.counters.dropped > 0, "a full unplugged NIC drops frames")
        usleep(100_000)
        #expect(try receive.takeUsed().isEmpty, "nothing arrives on an unplugged NIC")
    }
}

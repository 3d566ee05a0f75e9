import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver

/// The shared mock driver (Sources/VirtioMockDriver) itself: register-level setup, fixed
/// recycled chains, ring reset, and the guest-side vsock header against the device's codec.
@Suite struct MockDriverTests {
    @Test func registerSetupFixedChainsAndResetThroughTheTransport() throws {
        let memory = try MockDriver.makeMemory()
        let transport = VirtioMMIOTransport(device: EntropyDevice(), memory: memory, raiseInterrupt: {})
        let registers = RegisterDriver(transport: transport)
        let driver = MockDriver(memory: memory, size: 8, base: 0x10000)
        for round in 0..<2 {
            try driver.resetRings()
            registers.initialize(drivers: [driver])
            #expect(transport.isActive)
            #expect(transport.queues[0].size == 8 && transport.queues[0].descriptorTable == GuestAddress(0x10000))
            // The same two descriptors recycled more often than the ring is long.
            for _ in 0..<20 {
                try driver.add(head: 6, [.init(address: 0x80000, length: 16, writable: true),
                                         .init(address: 0x80100, length: 8, writable: true)])
                transport.notify(queue: 0)
                var seen: [(UInt16, UInt32)] = []
                #expect(try driver.takeUsed { seen.append(($0, $1)) } == 1)
                #expect(seen.map(\.0) == [6] && seen.map(\.1) == [24])
            }
            #expect(registers.acknowledgeInterrupt() == 1)
            #expect(registers.acknowledgeInterrupt() == 0)
            registers.reset()
            #expect(!transport.isActive, "round \(round)")
        }
    }

    @Test func guestVsockHeaderMatchesTheDevicesCodec() throws {
        let memory = try MockDriver.makeMemory(megabytes: 1)
        let header = MockVsockHeader(sourceCID: 3, destinationCID: 2, sourcePort: 0x1234_5678, destinationPort: 1024,
                                     length: 4096, operation: .creditUpdate, flags: 3,
                                     bufferAllocation: 256 << 10, forwardCount: 0xDEAD_BEEF)
        try header.write(to: memory, at: 0x1000)
        let bytes = try memory.readBytes(at: GuestAddress(0x1000), count: MockVsockHeader.size)
        let device = try #require(VsockHeader(bytes: bytes))
        #expect(device == VsockHeader(sourceCID: 3, destinationCID: 2, sourcePort: 0x1234_5678, destinationPort: 1024,
                                      length: 4096, operation: VsockOperation.creditUpdate.rawValue, flags: 3,
                                      bufferAllocation: 256 << 10, forwardCount: 0xDEAD_BEEF))
        try memory.write(bytes: device.bytes, at: GuestAddress(0x2000))
        #expect(try MockVsockHeader(memory: memory, at: 0x2000) == header)
        #expect(MockVsockHeader.size == VsockHeader.size)
    }
}

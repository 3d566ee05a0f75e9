import Foundation
import GuestMemory
import Synchronization
import Testing
@testable import Virtio
import VirtioMockDriver

/// An empty drive slot that gets its medium while the driver runs (a pod's later
/// containers): the driver must be told (config-change interrupt, new generation) and
/// must see the new capacity and contents; an emptied slot answers I/O errors.
/// A class: each test gets a fresh instance, and its deinit removes that test's image.
@Suite final class DriveSlotTests {
    let memory: GuestMemory
    let imagePath: String
    let image: [UInt8]

    init() throws {
        memory = try MockDriver.makeMemory()
        imagePath = FileManager.default.temporaryDirectory.appending(path: "kasa-slot-\(UUID().uuidString)").path
        image = (0..<(16 * 512)).map { UInt8(truncatingIfNeeded: $0 * 13 + 1) }
        try Data(image).write(to: URL(filePath: imagePath))
    }

    deinit { try? FileManager.default.removeItem(atPath: imagePath) }

    func header(_ type: UInt32, sector: UInt64) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian, Array.init) + [0, 0, 0, 0] + withUnsafeBytes(of: sector.littleEndian, Array.init)
    }

    @Test func emptySlotTakesAMediumAndTellsTheDriver() throws {
        let interrupts = Atomic<Int>(0)
        let slot = BlockDevice(emptyReadOnly: true)
        let transport = VirtioMMIOTransport(device: slot, memory: memory, raiseInterrupt: { interrupts.add(1, ordering: .relaxed) })
        let registers = RegisterDriver(transport: transport)
        registers.initialize(features: VirtioFeature.version1 | 1 << 5, bases: [0x10000])
        let mock = try MockDriver(memory: memory, queue: transport.queues[0])
        #expect(transport.isActive)
        #expect(slot.readConfiguration(offset: 0, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])

        // Before a medium: reads fail with VIRTIO_BLK_S_IOERR.
        let (_, before) = try mock.add([.readable(header(0, sector: 0)), .writable(512), .writable(1)])
        transport.notify(queue: 0)
        _ = try mock.takeUsed()
        #expect(try mock.read(before[2], 1) == [1])
        #expect(registers.acknowledgeInterrupt() == 1)

        let generation = registers.read(0x0fc)
        let raised = interrupts.load(ordering: .relaxed)
        try transport.changeConfiguration { try slot.insertMedium(path: imagePath) }
        #expect(interrupts.load(ordering: .relaxed) == raised + 1)
        #expect(registers.acknowledgeInterrupt() == 2, "a config change sets InterruptStatus bit 1 only")
        #expect(registers.read(0x0fc) != generation)
        #expect(slot.readConfiguration(offset: 0, count: 8) == [16, 0, 0, 0, 0, 0, 0, 0])

        let (_, after) = try mock.add([.readable(header(0, sector: 3)), .writable(1024), .writable(1)])
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [1025])
        #expect(try mock.read(after[1], 1024) == Array(image[1536..<2560]))

        // A second medium is refused while one is in; after ejecting, I/O fails again.
        #expect(throws: BlockDeviceError.occupied(current: imagePath)) {
            try transport.changeConfiguration { try slot.insertMedium(path: imagePath) }
        }
        transport.changeConfiguration { slot.ejectMedium() }
        #expect(slot.readConfiguration(offset: 0, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        let (_, ejected) = try mock.add([.readable(header(0, sector: 0)), .writable(512), .writable(1)])
        transport.notify(queue: 0)
        _ = try mock.takeUsed()
        #expect(try mock.read(ejected[2], 1) == [1])
        #expect(slot.deviceFeatures & (1 << 5) != 0, "a slot is read-only for whatever it carries")
    }

    @Test func aMediumInsertedBeforeTheDriverStartsRaisesNothing() throws {
        let interrupts = Atomic<Int>(0)
        let slot = BlockDevice(emptyReadOnly: true)
        let transport = VirtioMMIOTransport(device: slot, memory: memory, raiseInterrupt: { interrupts.add(1, ordering: .relaxed) })
        try transport.changeConfiguration { try slot.insertMedium(path: imagePath) }
        #expect(interrupts.load(ordering: .relaxed) == 0)
        #expect(slot.capacitySectors == 16)
        #expect(throws: BlockDeviceError.self) {
            try transport.changeConfiguration { () throws in
                slot.ejectMedium()
                try slot.insertMedium(path: imagePath + ".missing")
            }
        }
        #expect(!slot.hasMedium)
    }
}

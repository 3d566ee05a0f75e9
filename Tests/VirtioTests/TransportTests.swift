import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver
import HostOS

final class Counter: @unchecked Sendable {
    private let lock = Lock()
    private var value = 0
    private var linesStorage: [String] = []
    func increment() { lock.withLock { value += 1 } }
    func add(_ line: String) { lock.withLock { linesStorage.append(line) } }
    var count: Int { lock.withLock { value } }
    var lines: [String] { lock.withLock { linesStorage } }
}

@Suite struct TransportTests {
    let memory: GuestMemory
    let interrupts = Counter()
    let reports = Counter()
    let transport: VirtioMMIOTransport
    let driver: RegisterDriver

    init() throws {
        memory = try MockDriver.makeMemory()
        let interrupts = self.interrupts, reports = self.reports
        transport = VirtioMMIOTransport(device: EntropyDevice(), memory: memory,
                                        raiseInterrupt: { interrupts.increment() }, report: { reports.add($0) })
        driver = RegisterDriver(transport: transport)
    }

    @Test func identifiesAsModernVirtioMMIO() {
        #expect(driver.read(0x000) == 0x7472_6976)
        #expect(driver.read(0x004) == 2)
        #expect(driver.read(0x008) == 4)
        driver.write(0x014, 1)
        #expect(driver.read(0x010) & 1 == 1)  // VIRTIO_F_VERSION_1 is bit 32
        driver.write(0x030, 0)
        #expect(driver.read(0x034) == 256)
        driver.write(0x030, 7)
        #expect(driver.read(0x034) == 0)
    }

    @Test func fullSetupThenARequestRaisesAnInterrupt() throws {
        driver.initialize(bases: [0x10000])
        #expect(transport.isActive)
        #expect(driver.read(0x070) == 15)
        // Requests now go through the rings MockDriver writes.
        let queue = transport.queues[0]
        let mock = try MockDriver(memory: memory, queue: queue)
        let (_, addresses) = try mock.add([.writable(32)])
        driver.write(0x050, 0)
        let used = try mock.takeUsed()
        #expect(used.count == 1 && used[0].length == 32)
        #expect(try mock.read(addresses[0], 32) != [UInt8](repeating: 0, count: 32))
        #expect(interrupts.count == 1)
        #expect(driver.read(0x060) == 1)
        driver.write(0x064, 1)
        #expect(driver.read(0x060) == 0)
    }

    @Test func featuresWithoutVersion1AreRefused() {
        driver.write(0x070, 1 | 2)
        driver.write(0x024, 0)
        driver.write(0x020, 0)
        driver.write(0x070, 1 | 2 | 8)
        #expect(driver.read(0x070) & 8 == 0)
        #expect(!reports.lines.isEmpty)
    }

    @Test func unofferedFeaturesAreRefused() {
        driver.write(0x070, 3)
        driver.write(0x024, 1)
        driver.write(0x020, 1 | 0x8000)  // VERSION_1 plus an unknown high bit
        driver.write(0x070, 3 | 8)
        #expect(driver.read(0x070) & 8 == 0)
    }

    @Test func notifyBeforeDriverOKIsIgnored() throws {
        driver.write(0x050, 0)
        #expect(reports.lines.contains { $0.contains("before DRIVER_OK") })
        #expect(interrupts.count == 0)
    }

    @Test func invalidQueueSetupMarksTheDeviceForReset() {
        driver.initialize(queueSize: 100, bases: [0x10000])  // not a power of two
        #expect(!transport.isActive)
        #expect(driver.read(0x070) & 64 != 0)
    }

    /// A chain that fails validation (here a `next` beyond the table) must not stall the
    /// queue silently: the device needs a reset, the driver hears of it through the
    /// config-change interrupt, and the host counts and reports it. A reset recovers.
    @Test func aBrokenChainSetsNeedsResetAndRaisesTheConfigInterrupt() throws {
        driver.initialize(bases: [0x10000])
        let mock = try MockDriver(memory: memory, queue: transport.queues[0])
        try mock.writeDescriptor(0, address: 0x40000, length: 16, flags: 2 | 1, next: 999)
        try mock.makeAvailable(0)
        driver.write(0x050, 0)
        #expect(driver.read(0x070) & 64 != 0, "DEVICE_NEEDS_RESET")
        #expect(driver.read(0x060) & 2 != 0, "the config-change interrupt")
        #expect(interrupts.count == 1)
        #expect(transport.queueErrors == 1)
        #expect(reports.lines.contains { $0.contains("queue 0 is broken") }, "\(reports.lines)")
        // Another broken chain: counted, but the interrupt is not repeated.
        try mock.writeDescriptor(1, address: 0x40000, length: 16, flags: 2 | 1, next: 999)
        try mock.makeAvailable(1)
        driver.write(0x050, 0)
        #expect(transport.queueErrors == 2 && interrupts.count == 1)
        driver.write(0x070, 0)
        #expect(driver.read(0x070) == 0)
        driver.initialize(bases: [0x10000])
        #expect(driver.read(0x070) == 15, "a reset and a new set-up bring the device back")
    }

    @Test func resetClearsEverything() throws {
        driver.initialize(bases: [0x10000])
        driver.write(0x070, 0)
        #expect(driver.read(0x070) == 0)
        #expect(!transport.isActive)
        #expect(!transport.queues[0].ready)
        driver.write(0x030, 0)
        #expect(driver.read(0x044) == 0)
    }

    @Test func queueCannotChangeAfterDriverOK() {
        driver.initialize(bases: [0x10000])
        driver.write(0x030, 0)
        driver.write(0x038, 8)
        #expect(transport.queues[0].size == 16)
    }

    @Test func oddAccessesAreReportedNotFatal() {
        #expect(transport.read(offset: 0x002, size: 2) == [0, 0])
        transport.write(offset: 0x000, bytes: [1, 2, 3, 4])
        #expect(reports.lines.count == 2)
    }
}

@Suite struct EntropyDeviceTests {
    @Test func honoursEachBufferLength() throws {
        let memory = try MockDriver.makeMemory()
        let transport = VirtioMMIOTransport(device: EntropyDevice(), memory: memory, raiseInterrupt: {})
        RegisterDriver(transport: transport).initialize(bases: [0x10000])
        let mock = try MockDriver(memory: memory, queue: transport.queues[0])
        try mock.add([.writable(1)])
        try mock.add([.writable(100), .writable(28)])
        try mock.add([.readable([1, 2])])  // nothing to fill
        transport.notify(queue: 0)
        #expect(try mock.takeUsed().map(\.length) == [1, 128, 0])
    }
}

import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver

/// The transport's safety net for lost notifications (issue 15, fault 1), with the entropy
/// device (it serves every available buffer when notified).
@Suite struct TransportWatchTests {
    /// TransportTests' entropy device, counters and register driver, set up and running.
    let rig: TransportTests
    let mock: MockDriver
    var transport: VirtioMMIOTransport { rig.transport }
    var driver: RegisterDriver { rig.driver }
    var interrupts: Counter { rig.interrupts }
    var reports: Counter { rig.reports }

    init() throws {
        rig = try TransportTests()
        rig.driver.initialize(bases: [0x10000])
        mock = try MockDriver(memory: rig.memory, queue: rig.transport.queues[0])
    }

    static let second: UInt64 = 1_000_000_000

    @Test func anEntryLeftWithoutANotificationIsServedAtTheSecondLook() throws {
        try mock.add([.writable(16)])  // published, never notified
        transport.watch(now: 0, interruptTimeout: Self.second)
        #expect(try mock.takeUsed().isEmpty, "one look is not enough: the notification may be on its way")
        transport.watch(now: Self.second / 4, interruptTimeout: Self.second)
        #expect(try mock.takeUsed().count == 1)
        #expect(transport.watchCounts.servedWithoutNotification == 1)
        #expect(reports.lines.contains { $0.contains("served them (a lost notification)") })
    }

    @Test func aNotifiedQueueIsNotCountedAsRescued() throws {
        for step in 0..<4 {
            try mock.add([.writable(8)])
            driver.write(0x050, 0)
            transport.watch(now: UInt64(step) * Self.second, interruptTimeout: Self.second)
        }
        #expect(try mock.takeUsed().count == 4)
        #expect(transport.watchCounts.servedWithoutNotification == 0)
    }

    @Test func anUnacknowledgedInterruptIsRaisedAgainAfterTheTimeout() throws {
        try mock.add([.writable(8)])
        driver.write(0x050, 0)
        #expect(interrupts.count == 1)
        transport.watch(now: 0, interruptTimeout: Self.second)
        transport.watch(now: Self.second / 2, interruptTimeout: Self.second)
        #expect(interrupts.count == 1, "not before the timeout")
        transport.watch(now: Self.second, interruptTimeout: Self.second)
        #expect(interrupts.count == 2)
        #expect(transport.watchCounts.interruptsRaisedAgain == 1)
        // Acknowledged: nothing more.
        driver.write(0x064, driver.read(0x060))
        transport.watch(now: 3 * Self.second, interruptTimeout: Self.second)
        transport.watch(now: 5 * Self.second, interruptTimeout: Self.second)
        #expect(interrupts.count == 2)
    }

    @Test func aResetDeviceIsLeftAlone() throws {
        try mock.add([.writable(8)])
        driver.write(0x070, 0)  // reset
        transport.watch(now: 0, interruptTimeout: Self.second)
        transport.watch(now: Self.second, interruptTimeout: Self.second)
        #expect(try mock.takeUsed().isEmpty)
        #expect(interrupts.count == 0)
    }
}

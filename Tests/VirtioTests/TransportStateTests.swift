import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver

/// A transport's state moved into a new transport (what a restore does in a new process):
/// the driver's setup survives, a request the driver made available just before the
/// capture is served after the restore, and a damaged state is refused.
@Suite struct TransportStateTests {
    let memory: GuestMemory
    let interrupts = Counter()

    init() throws {
        memory = try MockDriver.makeMemory()
    }

    func makeTransport() -> VirtioMMIOTransport {
        let interrupts = self.interrupts
        return VirtioMMIOTransport(device: EntropyDevice(), memory: memory, raiseInterrupt: { interrupts.increment() })
    }

    @Test func aRestoredTransportServesWhatWasPending() throws {
        let original = makeTransport()
        let driver = RegisterDriver(transport: original)
        driver.initialize(bases: [0x10000])
        let mock = try MockDriver(memory: memory, queue: original.queues[0])
        _ = try mock.add([.writable(16)])
        driver.write(0x050, 0)
        #expect(try mock.takeUsed().count == 1)
        // Made available, but the notification never reached the device (it was in
        // flight when the VM was paused).
        _ = try mock.add([.writable(16)])
        let state = original.captureState()
        #expect(state.active && state.queues[0].ready && state.queues[0].nextUsed == 1)

        let restored = makeTransport()
        let before = interrupts.count
        try restored.restore(state)
        #expect(restored.isActive)
        #expect(RegisterDriver(transport: restored).read(0x070) == 15, "DRIVER_OK and the rest of the status")
        let used = try mock.takeUsed()
        #expect(used.count == 1 && used[0].length == 16, "the pending request was not served after the restore")
        #expect(interrupts.count > before)
        #expect(restored.captureState().queues[0].nextUsed == 2)
    }

    @Test func aStateThatDoesNotFitIsRefused() throws {
        let original = makeTransport()
        RegisterDriver(transport: original).initialize(bases: [0x10000])
        let good = original.captureState()

        var tooLarge = good
        tooLarge.queues[0].size = 1024
        #expect(throws: VirtioRestoreError.self) { try makeTransport().restore(tooLarge) }
        var outside = good
        outside.queues[0].usedRing = memory.totalSize + 0x10000
        #expect(throws: VirtioRestoreError.self) { try makeTransport().restore(outside) }
        var extraQueue = good
        extraQueue.queues.append(good.queues[0])
        #expect(throws: VirtioRestoreError.self) { try makeTransport().restore(extraQueue) }
        var unknownFeature = good
        unknownFeature.driverFeatures |= 1 << 60
        #expect(throws: VirtioRestoreError.self) { try makeTransport().restore(unknownFeature) }
    }
}

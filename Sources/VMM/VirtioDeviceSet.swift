import Boot
import CLinux
import GuestMemory
import KVM
import LegacyDevices
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// The VM's virtio-mmio devices: their windows and interrupts from `BootLayout`, queue
/// notifications through ioeventfds and interrupts through irqfds, both serviced by one
/// event-loop thread, so a guest notification costs no trip through a vCPU thread.
final class VirtioDeviceSet: Sendable {
    struct Slot: Sendable {
        let base: UInt64
        let interrupt: UInt32
        let transport: VirtioMMIOTransport
    }

    let slots: [Slot]
    let eventLoop: EventLoop
    /// `virtio_mmio.device=4K@0x...:IRQ` per device, in probe order.
    let commandLine: String
    /// Kernel parameters for a root drive, if one is marked root.
    let rootParameters: String?
    private let descriptors: [Int32]

    /// Devices in the order the guest will name them: drives first (vda, vdb, ...), then
    /// the entropy source, then vsock.
    init(devices: [any VirtioDevice], rootDriveIndex: Int?, rootReadOnly: Bool, memory: GuestMemory,
         machine: KVMVirtualMachine, eventLoop: EventLoop, report: @escaping @Sendable (String) -> Void) throws {
        guard devices.count <= BootLayout.virtioMaximumDevices else {
            throw VMMError.tooManyDevices(requested: devices.count, limit: BootLayout.virtioMaximumDevices)
        }
        self.eventLoop = eventLoop
        var slots: [Slot] = []
        var descriptors: [Int32] = []
        var parameters: [String] = []
        for (index, device) in devices.enumerated() {
            let base = BootLayout.virtioMMIOBase + UInt64(index) * BootLayout.virtioMMIOSlotSize
            let interrupt = BootLayout.virtioFirstInterrupt + UInt32(index)
            let raise = try VirtioDeviceSet.interruptRaiser(line: interrupt, machine: machine, descriptors: &descriptors)
            let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: raise, report: report)
            for queue in transport.queues.indices {
                try VirtioDeviceSet.routeNotifications(queue: queue, of: transport, at: base, machine: machine,
                                                       eventLoop: eventLoop, descriptors: &descriptors)
            }
            slots.append(Slot(base: base, interrupt: interrupt, transport: transport))
            parameters.append("virtio_mmio.device=4K@0x\(String(base, radix: 16)):\(interrupt)")
        }
        self.slots = slots
        self.descriptors = descriptors
        commandLine = parameters.joined(separator: " ")
        if let rootDriveIndex {
            rootParameters = "root=/dev/\(VirtioDeviceSet.guestDriveName(rootDriveIndex)) \(rootReadOnly ? "ro" : "rw")"
        } else {
            rootParameters = nil
        }
    }

    /// Linux names virtio disks in probe order: vda, vdb, ... (fewer than 26 devices here).
    static func guestDriveName(_ index: Int) -> String {
        "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index)))
    }

    deinit {
        for descriptor in descriptors {
            eventLoop.unregister(descriptor)
            close(descriptor)
        }
    }

    /// An irqfd for `line`; if KVM refuses one, pulse the line through KVM_IRQ_LINE instead.
    private static func interruptRaiser(line: UInt32, machine: KVMVirtualMachine, descriptors: inout [Int32]) throws -> @Sendable () -> Void {
        let eventFD = clinux_eventfd(0)
        if eventFD >= 0, (try? machine.registerInterruptEventFD(eventFD, line: line)) != nil {
            descriptors.append(eventFD)
            return {
                var one: UInt64 = 1
                _ = Glibc.write(eventFD, &one, 8)
            }
        }
        if eventFD >= 0 { close(eventFD) }
        return {
            _ = try? machine.setInterruptLine(line, high: true)
            _ = try? machine.setInterruptLine(line, high: false)
        }
    }

    /// An ioeventfd matching writes of `queue` to QueueNotify; without one, the notify write
    /// exits to the vCPU thread and the transport handles it there.
    private static func routeNotifications(queue: Int, of transport: VirtioMMIOTransport, at base: UInt64,
                                           machine: KVMVirtualMachine, eventLoop: EventLoop, descriptors: inout [Int32]) throws {
        let eventFD = clinux_eventfd(0)
        guard eventFD >= 0 else { return }
        do {
            try machine.registerIOEventFD(eventFD, mmioAddress: base + VirtioMMIOTransport.queueNotifyOffset, length: 4, matching: UInt64(queue))
        } catch {
            close(eventFD)
            return
        }
        descriptors.append(eventFD)
        eventLoop.register(eventFD) { _ in
            var count: UInt64 = 0
            guard Glibc.read(eventFD, &count, 8) == 8 else { return }
            transport.notify(queue: queue)
        }
    }

    func slot(containing address: UInt64) -> Slot? {
        guard address >= BootLayout.virtioMMIOBase else { return nil }
        let index = Int((address - BootLayout.virtioMMIOBase) / BootLayout.virtioMMIOSlotSize)
        return index < slots.count ? slots[index] : nil
    }

    func read(address: UInt64, length: Int) -> [UInt8]? {
        guard let slot = slot(containing: address) else { return nil }
        return slot.transport.read(offset: address - slot.base, size: length)
    }

    func write(address: UInt64, bytes: [UInt8]) -> Bool {
        guard let slot = slot(containing: address) else { return false }
        slot.transport.write(offset: address - slot.base, bytes: bytes)
        return true
    }
}

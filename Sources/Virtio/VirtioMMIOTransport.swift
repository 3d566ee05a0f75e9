import GuestMemory
import HostOS

/// The virtio-mmio transport, version 2 (virtio 1.x section 4.2.2): registers, feature
/// negotiation, device status, queue setup, interrupts and config space. It carries any
/// `VirtioDevice` without knowing what it is.
public final class VirtioMMIOTransport: @unchecked Sendable {
    public static let queueNotifyOffset: UInt64 = 0x050
    static let magic: UInt32 = 0x7472_6976  // "virt"
    static let vendor: UInt32 = 0x4153_414B  // "KASA"

    enum Register: UInt64 {
        case magic = 0x000, version = 0x004, deviceID = 0x008, vendorID = 0x00c
        case deviceFeatures = 0x010, deviceFeaturesSelect = 0x014
        case driverFeatures = 0x020, driverFeaturesSelect = 0x024
        case queueSelect = 0x030, queueSizeMax = 0x034, queueSize = 0x038, queueReady = 0x044
        case queueNotify = 0x050, interruptStatus = 0x060, interruptAcknowledge = 0x064, status = 0x070
        case queueDescriptorLow = 0x080, queueDescriptorHigh = 0x084
        case queueDriverLow = 0x090, queueDriverHigh = 0x094
        case queueDeviceLow = 0x0a0, queueDeviceHigh = 0x0a4
        case configurationGeneration = 0x0fc
    }

    public enum Status {
        public static let acknowledge: UInt32 = 1, driver: UInt32 = 2, driverOK: UInt32 = 4
        public static let featuresOK: UInt32 = 8, needsReset: UInt32 = 64, failed: UInt32 = 128
    }

    public let device: any VirtioDevice
    public let memory: GuestMemory
    public let queues: [Virtqueue]
    let lock = Lock()
    let raiseInterrupt: @Sendable () -> Void
    let report: @Sendable (String) -> Void
    // Register state, guarded by `lock`.
    var status: UInt32 = 0
    var deviceFeaturesSelect: UInt32 = 0
    var driverFeaturesSelect: UInt32 = 0
    var driverFeatures: UInt64 = 0
    var queueSelect: UInt32 = 0
    var interruptStatus: UInt32 = 0
    var configurationGeneration: UInt32 = 0
    var active = false
    private var brokenQueueErrors = 0
    var watchState: WatchState

    /// `raiseInterrupt` asserts the device's interrupt (an irqfd write); `report` receives
    /// one line for each driver mistake, so a misbehaving guest is visible, not fatal.
    public init(device: any VirtioDevice, memory: GuestMemory,
                raiseInterrupt: @escaping @Sendable () -> Void, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.device = device
        self.memory = memory
        self.raiseInterrupt = raiseInterrupt
        self.report = report
        queues = device.queueMaximumSizes.map { Virtqueue(maximumSize: $0) }
        watchState = WatchState(queueCount: queues.count)
    }

    public var offeredFeatures: UInt64 {
        device.deviceFeatures | VirtioFeature.version1 | VirtioFeature.ringEventIndex | VirtioFeature.ringIndirectDescriptors
    }

    public var isActive: Bool { lock.withLock { active } }

    public func read(offset: UInt64, size: Int) -> [UInt8] {
        lock.withLock {
            if offset >= 0x100 {
                return device.readConfiguration(offset: Int(offset - 0x100), count: size)
            }
            guard size == 4, offset % 4 == 0, let register = Register(rawValue: offset) else {
                report("virtio-mmio: unsupported \(size)-byte read at offset 0x\(String(offset, radix: 16))")
                return [UInt8](repeating: 0, count: size)
            }
            return littleEndianBytes(readRegister(register))
        }
    }

    public func write(offset: UInt64, bytes: [UInt8]) {
        lock.withLock {
            if offset >= 0x100 {
                device.writeConfiguration(offset: Int(offset - 0x100), bytes: bytes)
                return
            }
            guard bytes.count == 4, offset % 4 == 0, let register = Register(rawValue: offset) else {
                report("virtio-mmio: unsupported \(bytes.count)-byte write at offset 0x\(String(offset, radix: 16))")
                return
            }
            let value = bytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
            writeRegister(register, value)
        }
    }

    /// Changes the device's configuration (a drive's medium) under the lock; when it
    /// succeeds and the driver is running, bumps the config generation and raises the
    /// config-change interrupt (virtio 1.x 4.2.2: InterruptStatus bit 1), so the driver
    /// re-reads the config space.
    public func changeConfiguration<T>(_ body: () throws -> T) rethrows -> T {
        try lock.withLock {
            let result = try body()
            configurationGeneration &+= 1
            if active {
                interruptStatus |= 2
                raiseInterrupt()
            }
            return result
        }
    }

    /// Reads the device's state under the lock (every device call holds it).
    public func inspect<T>(_ body: () throws -> T) rethrows -> T {
        try lock.withLock(body)
    }

    /// A queue notification that arrived through an ioeventfd rather than a register write.
    public func notify(queue index: Int) {
        lock.withLock { notifyLocked(UInt32(index)) }
    }

    private func readRegister(_ register: Register) -> UInt32 {
        switch register {
        case .magic: return VirtioMMIOTransport.magic
        case .version: return 2
        case .deviceID: return device.deviceType
        case .vendorID: return VirtioMMIOTransport.vendor
        case .deviceFeatures:
            switch deviceFeaturesSelect {
            case 0: return UInt32(truncatingIfNeeded: offeredFeatures)
            case 1: return UInt32(truncatingIfNeeded: offeredFeatures >> 32)
            default: return 0
            }
        case .queueSizeMax: return selectedQueue.map { UInt32($0.maximumSize) } ?? 0
        case .queueReady: return selectedQueue.map { $0.ready ? 1 : 0 } ?? 0
        case .interruptStatus: return interruptStatus
        case .status: return status
        case .configurationGeneration: return configurationGeneration
        default:
            return 0  // write-only registers read as zero
        }
    }

    private var selectedQueue: Virtqueue? {
        Int(queueSelect) < queues.count ? queues[Int(queueSelect)] : nil
    }

    private func writeRegister(_ register: Register, _ value: UInt32) {
        switch register {
        case .deviceFeaturesSelect: deviceFeaturesSelect = value
        case .driverFeaturesSelect: driverFeaturesSelect = value
        case .driverFeatures:
            guard status & Status.featuresOK == 0 else { return report("virtio-mmio: driver features written after FEATURES_OK") }
            switch driverFeaturesSelect {
            case 0: driverFeatures = (driverFeatures & ~0xFFFF_FFFF) | UInt64(value)
            case 1: driverFeatures = (driverFeatures & 0xFFFF_FFFF) | UInt64(value) << 32
            default: break
            }
        case .queueSelect: queueSelect = value
        case .queueSize: configureQueue { $0.size = UInt16(truncatingIfNeeded: value) }
        case .queueReady: configureQueue { $0.ready = value == 1 }
        case .queueDescriptorLow: configureQueue { $0.descriptorTable = GuestAddress(low($0.descriptorTable.value, value)) }
        case .queueDescriptorHigh: configureQueue { $0.descriptorTable = GuestAddress(high($0.descriptorTable.value, value)) }
        case .queueDriverLow: configureQueue { $0.availableRing = GuestAddress(low($0.availableRing.value, value)) }
        case .queueDriverHigh: configureQueue { $0.availableRing = GuestAddress(high($0.availableRing.value, value)) }
        case .queueDeviceLow: configureQueue { $0.usedRing = GuestAddress(low($0.usedRing.value, value)) }
        case .queueDeviceHigh: configureQueue { $0.usedRing = GuestAddress(high($0.usedRing.value, value)) }
        case .queueNotify: notifyLocked(value)
        case .interruptAcknowledge: interruptStatus &= ~value
        case .status: writeStatus(value)
        default:
            report("virtio-mmio: write to read-only register 0x\(String(register.rawValue, radix: 16))")
        }
    }

    private func low(_ current: UInt64, _ value: UInt32) -> UInt64 { (current & ~0xFFFF_FFFF) | UInt64(value) }
    private func high(_ current: UInt64, _ value: UInt32) -> UInt64 { (current & 0xFFFF_FFFF) | UInt64(value) << 32 }

    /// Queue registers may change only while the driver is setting up (before DRIVER_OK).
    private func configureQueue(_ change: (Virtqueue) -> Void) {
        guard let queue = selectedQueue else { return report("virtio-mmio: queue \(queueSelect) does not exist") }
        guard status & Status.driverOK == 0 else { return report("virtio-mmio: queue \(queueSelect) reconfigured after DRIVER_OK") }
        change(queue)
    }

    private func notifyLocked(_ index: UInt32) {
        guard active else { return report("virtio-mmio: queue \(index) notified before DRIVER_OK") }
        guard Int(index) < queues.count, queues[Int(index)].ready else { return report("virtio-mmio: notify for unready queue \(index)") }
        watchState.notifications[Int(index)] &+= 1
        device.queueNotified(Int(index))
    }

    private func writeStatus(_ value: UInt32) {
        if value == 0 {
            resetLocked()
            return
        }
        var newStatus = value
        if value & Status.featuresOK != 0 && status & Status.featuresOK == 0 {
            let unsupported = driverFeatures & ~offeredFeatures
            if unsupported != 0 || driverFeatures & VirtioFeature.version1 == 0 {
                // Leaving FEATURES_OK clear tells the driver its selection was refused.
                report("virtio-mmio: refused driver features 0x\(String(driverFeatures, radix: 16))")
                newStatus &= ~Status.featuresOK
            }
        }
        if newStatus & Status.driverOK != 0 && !active {
            guard newStatus & Status.featuresOK != 0 else {
                status = newStatus | Status.failed
                return report("virtio-mmio: DRIVER_OK without FEATURES_OK")
            }
            do {
                for queue in queues where queue.ready {
                    queue.eventIndex = driverFeatures & VirtioFeature.ringEventIndex != 0
                    try queue.validate(memory: memory)
                }
                try device.activate(makeContextLocked())
                active = true
            } catch {
                report("virtio-mmio: activation failed: \(error)")
                newStatus |= Status.needsReset
            }
        }
        status = newStatus
    }

    /// What the device gets at DRIVER_OK (and again at restore).
    func makeContextLocked() -> VirtioDeviceContext {
        let raise = raiseInterrupt
        return VirtioDeviceContext(
            memory: memory, queues: queues, acceptedFeatures: driverFeatures,
            signalUsed: { [weak self] index in self?.signalUsedLocked(index, raise: raise) },
            serialized: { [weak self] body in self?.lock.withLock(body) },
            queueBroken: { [weak self] index, error in self?.queueBrokenLocked(index, error, raise: raise) })
    }

    /// How many times a queue of this device was found broken (a chain that failed
    /// validation) since it was created.
    public var queueErrors: Int { lock.withLock { brokenQueueErrors } }

    /// Called by the device, with the lock already held: DEVICE_NEEDS_RESET, the error
    /// counted (and reported the first times), the config-change interrupt.
    private func queueBrokenLocked(_ index: Int, _ error: any Error, raise: @Sendable () -> Void) {
        brokenQueueErrors += 1
        if brokenQueueErrors <= 10 { report("virtio-mmio: queue \(index) is broken (\(error)); the device needs a reset") }
        guard status & Status.needsReset == 0 else { return }
        status |= Status.needsReset
        interruptStatus |= 2
        raise()
    }

    /// Called by the device, with the lock already held (from a transport call or `serialized`).
    private func signalUsedLocked(_ index: Int, raise: @Sendable () -> Void) {
        guard index < queues.count else { return }
        let wanted = (try? queues[index].needsNotification(memory: memory)) ?? true
        guard wanted else { return }
        interruptStatus |= 1
        raise()
    }

    private func resetLocked() {
        device.reset()
        for queue in queues { queue.reset() }
        status = 0
        driverFeatures = 0
        deviceFeaturesSelect = 0
        driverFeaturesSelect = 0
        queueSelect = 0
        interruptStatus = 0
        active = false
    }

    private func littleEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xff), UInt8((value >> 8) & 0xff), UInt8((value >> 16) & 0xff), UInt8(value >> 24)]
    }
}

import GuestMemory

extension VirtioMMIOTransport {
    /// The transport's registers and its queues, for snapshot and restore. The device's own
    /// configuration (a drive's file, vsock's CID) is the VMM's to record: it builds the
    /// device again before restoring this.
    public struct State: Sendable, Equatable {
        public var status: UInt32
        public var deviceFeaturesSelect: UInt32
        public var driverFeaturesSelect: UInt32
        public var driverFeatures: UInt64
        public var queueSelect: UInt32
        public var interruptStatus: UInt32
        public var configurationGeneration: UInt32
        public var active: Bool
        public var queues: [Virtqueue.State]

        public init(status: UInt32, deviceFeaturesSelect: UInt32, driverFeaturesSelect: UInt32, driverFeatures: UInt64,
                    queueSelect: UInt32, interruptStatus: UInt32, configurationGeneration: UInt32, active: Bool,
                    queues: [Virtqueue.State]) {
            self.status = status
            self.deviceFeaturesSelect = deviceFeaturesSelect
            self.driverFeaturesSelect = driverFeaturesSelect
            self.driverFeatures = driverFeatures
            self.queueSelect = queueSelect
            self.interruptStatus = interruptStatus
            self.configurationGeneration = configurationGeneration
            self.active = active
            self.queues = queues
        }
    }

    /// Captures the state with the device quiesced (`prepareForSnapshot`). The VM must be
    /// paused: no vCPU and no device backend may touch the queues meanwhile.
    public func captureState() -> State {
        lock.withLock {
            if active { device.prepareForSnapshot() }
            return State(status: status, deviceFeaturesSelect: deviceFeaturesSelect, driverFeaturesSelect: driverFeaturesSelect,
                         driverFeatures: driverFeatures, queueSelect: queueSelect, interruptStatus: interruptStatus,
                         configurationGeneration: configurationGeneration, active: active,
                         queues: queues.map { $0.captureState() })
        }
    }

    /// Puts a captured state into this freshly built transport (same device type) before
    /// the VM runs. An active device is activated again; then
    /// every ready queue is looked at once (a notification the guest sent just before the
    /// snapshot may never have been served) and a pending interrupt is raised again (the
    /// guest may not have taken it before the snapshot): both are harmless when spurious.
    public func restore(_ state: State) throws {
        guard state.queues.count == queues.count else {
            throw VirtioRestoreError("device type \(device.deviceType) has \(queues.count) queues, the snapshot \(state.queues.count)")
        }
        guard state.driverFeatures & ~offeredFeatures == 0 else {
            throw VirtioRestoreError("device type \(device.deviceType): the snapshot's features 0x\(String(state.driverFeatures, radix: 16)) are not offered here")
        }
        try lock.withLock {
            for (queue, saved) in zip(queues, state.queues) {
                guard saved.size <= queue.maximumSize else {
                    throw VirtioRestoreError("device type \(device.deviceType): queue size \(saved.size) exceeds \(queue.maximumSize)")
                }
                do {
                    try queue.restore(saved, memory: memory)
                } catch {
                    throw VirtioRestoreError("device type \(device.deviceType): \(error)")
                }
            }
            status = state.status
            deviceFeaturesSelect = state.deviceFeaturesSelect
            driverFeaturesSelect = state.driverFeaturesSelect
            driverFeatures = state.driverFeatures
            queueSelect = state.queueSelect
            interruptStatus = state.interruptStatus
            configurationGeneration = state.configurationGeneration
            active = false
            guard state.active else { return }
            do {
                try device.activate(makeContextLocked())
            } catch {
                throw VirtioRestoreError("device type \(device.deviceType): activation failed: \(error)")
            }
            active = true
            for (index, queue) in queues.enumerated() where queue.ready { device.queueNotified(index) }
            if interruptStatus != 0 { raiseInterrupt() }
        }
    }
}

public struct VirtioRestoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = "restoring virtio state: " + description }
}

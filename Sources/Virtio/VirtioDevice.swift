import GuestMemory

/// What the transport gives a device when the driver sets DRIVER_OK.
public struct VirtioDeviceContext: Sendable {
    public let memory: GuestMemory
    public let queues: [Virtqueue]
    /// Feature bits the driver accepted (VIRTIO_F_VERSION_1 included).
    public let acceptedFeatures: UInt64
    /// Call after pushing used entries to queue `index`: interrupts the driver if it wants one.
    public let signalUsed: @Sendable (_ index: Int) -> Void
    /// Runs `body` under the transport's lock. Work a device starts on its own (a backend
    /// socket became readable, a timer) must go through this, so it never races the vCPU
    /// threads resetting or reconfiguring the device.
    public let serialized: @Sendable (_ body: () -> Void) -> Void
    /// Call, under the transport's lock like every device call, when queue `index` holds a
    /// chain that fails validation: the transport sets DEVICE_NEEDS_RESET, counts the error
    /// and raises the config-change interrupt (virtio 1.x 2.1.2), so a broken ring is
    /// visible to the driver and the host instead of silently stalling.
    public let queueBroken: @Sendable (_ index: Int, _ error: any Error) -> Void

    public init(memory: GuestMemory, queues: [Virtqueue], acceptedFeatures: UInt64,
                signalUsed: @escaping @Sendable (_ index: Int) -> Void,
                serialized: @escaping @Sendable (_ body: () -> Void) -> Void,
                queueBroken: @escaping @Sendable (_ index: Int, _ error: any Error) -> Void = { _, _ in }) {
        self.memory = memory
        self.queues = queues
        self.acceptedFeatures = acceptedFeatures
        self.signalUsed = signalUsed
        self.serialized = serialized
        self.queueBroken = queueBroken
    }
}

extension VirtioDeviceContext {
    /// The next chain waiting on queue `index`; nil when none waits or the ring is broken
    /// (then reported through `queueBroken`: nothing more can be taken from it safely).
    public func nextChain(_ index: Int) -> DescriptorChain? {
        do {
            return try queues[index].pop(memory: memory)
        } catch {
            queueBroken(index, error)
            return nil
        }
    }

    /// Serves every chain waiting on queue `index` with `serve`, which returns the bytes it
    /// wrote into the chain, then interrupts the driver once if anything completed. A chain
    /// that fails validation stops the pass: the queue is broken until the driver resets it.
    public func drainQueue(_ index: Int, _ serve: (DescriptorChain) -> UInt32) {
        let queue = queues[index]
        var completed = false
        while let chain = nextChain(index) {
            do {
                try queue.pushUsed(head: chain.head, length: serve(chain), memory: memory)
            } catch {
                queueBroken(index, error)
                break
            }
            completed = true
        }
        if completed { signalUsed(index) }
    }
}

/// A virtio device model. The transport (virtio-mmio) owns registers, feature negotiation,
/// status and queues and never knows which device it carries; the device owns its config
/// space and what a request means. The transport calls every method with its lock held.
public protocol VirtioDevice: AnyObject, Sendable {
    /// Virtio device ID: 1 network, 2 block, 4 entropy, 19 socket, 26 file system.
    var deviceType: UInt32 { get }
    /// Device-specific feature bits offered (the transport adds VIRTIO_F_VERSION_1 itself).
    var deviceFeatures: UInt64 { get }
    /// Maximum size of each queue; the count is the number of queues.
    var queueMaximumSizes: [UInt16] { get }
    func readConfiguration(offset: Int, count: Int) -> [UInt8]
    func writeConfiguration(offset: Int, bytes: [UInt8])
    /// The driver finished setup (DRIVER_OK); keep the context to process queues.
    func activate(_ context: VirtioDeviceContext) throws
    /// The driver notified queue `index`.
    func queueNotified(_ index: Int)
    /// The driver reset the device (status 0): drop all state, close backend connections.
    func reset()
    /// The VM is paused for a snapshot: give back every chain popped but not yet used (the
    /// queue's next-available index then covers only finished requests), so that a restore
    /// loses no buffer of the driver's.
    func prepareForSnapshot()
    /// Why the device's state cannot be saved now (nil: it can).
    var snapshotObstacle: String? { get }
}

extension VirtioDevice {
    public func prepareForSnapshot() {}
    public var snapshotObstacle: String? { nil }
}

public enum VirtioFeature {
    public static let version1: UInt64 = 1 << 32
    public static let ringEventIndex: UInt64 = 1 << 29
    public static let ringIndirectDescriptors: UInt64 = 1 << 28
}

public enum VirtioDeviceType {
    public static let network: UInt32 = 1
    public static let block: UInt32 = 2
    public static let entropy: UInt32 = 4
    public static let socket: UInt32 = 19
    public static let fileSystem: UInt32 = 26
}

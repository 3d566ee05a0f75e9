import GuestMemory
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// virtio-vsock (device type 19) bridged to host Unix sockets the way Firecracker's hybrid
/// vsock does it:
/// - a host client connects to `udsPath`, writes `CONNECT <port>\n`, and once the guest
///   accepts reads `OK <hostport>\n`; the socket then carries the stream to guest `port`;
/// - a guest connection to CID 2 port P is bridged to the Unix socket `<udsPath>_P`.
///
/// Lifecycle: the listener is created by `init` (clients connecting early wait in its
/// backlog) and accepted from once the driver activates the device. `reset()` closes every
/// connection but keeps the listener, no longer accepted from: a client connecting while
/// the driver resets the device waits in its backlog for the next activation, as one
/// connecting before the first does (and a VMM running as its own user after set-up,
/// `kasa-vmm --user`, could not bind the socket again in the runtime's directory).
/// `tearDown()` (or deinit) closes everything, the listener too (removing its file).
///
/// Locking: the transport calls the `VirtioDevice` methods with its lock held; socket events
/// and timers take that lock through `context.serialized`. All state below is also guarded
/// by `lock` (always taken after the transport's lock), which covers the times there is no
/// context: before activation, after reset, and teardown.
public final class VsockDevice: VirtioDevice, @unchecked Sendable {
    public static let hostCID: UInt64 = 2
    static let rxQueue = 0, txQueue = 1, eventQueue = 2

    public let guestCID: UInt64
    public let udsPath: String
    let eventLoop: EventLoop
    let tuning: VsockTuning
    let lock = Lock()

    // Guarded by `lock`.
    var context: VirtioDeviceContext?
    /// Bumped on every activate/reset so socket events and timers of an older life are ignored.
    var activation: UInt64 = 0
    var listener: VsockListeningSocket?
    var listenerRegistered = false
    var tornDown = false
    var connections: [VsockConnectionKey: VsockConnection] = [:]
    var connectionsByID: [UInt64: VsockConnection] = [:]
    var pendingClients: [UInt64: VsockPendingClient] = [:]
    var nextID: UInt64 = 1
    var nextHostPort: UInt32 = VsockDevice.firstHostPort
    /// Connections owing control packets, then connections with host data to read, in order.
    var controlQueue: [UInt64] = []
    var dataQueue: [UInt64] = []
    /// RSTs for streams that have no connection (any more).
    var resetQueue: [VsockConnectionKey] = []
    /// An rx chain popped but not filled (nothing could be read after all); used next time.
    var heldRxChain: DescriptorChain?
    var scratch: [UInt8]

    static let firstHostPort: UInt32 = 1024

    /// Creates the device and its listening socket at `udsPath` (a stale socket file there is
    /// replaced). `guestCID` must be 3 or above. Sockets are watched on `eventLoop`.
    public convenience init(guestCID: UInt64, udsPath: String, eventLoop: EventLoop) throws {
        try self.init(guestCID: guestCID, udsPath: udsPath, eventLoop: eventLoop, tuning: VsockTuning())
    }

    init(guestCID: UInt64, udsPath: String, eventLoop: EventLoop, tuning: VsockTuning) throws {
        guard guestCID >= 3, guestCID < 0xFFFF_FFFF else { throw VsockError.invalidGuestCID(guestCID) }
        self.guestCID = guestCID
        self.udsPath = udsPath
        self.eventLoop = eventLoop
        self.tuning = tuning
        scratch = [UInt8](repeating: 0, count: max(tuning.maximumPayload, VsockConnectLine.maximumLength + 2))
        listener = try VsockUnixSocket.listen(path: udsPath)
    }

    deinit {
        lock.withLock { closeEverything() }
    }

    /// Closes every socket and the listener (removing its file) for good; the VMM calls this
    /// when the VM stops. Later activations fail.
    public func tearDown() {
        lock.withLock {
            closeEverything()
            tornDown = true
            context = nil
            activation &+= 1
        }
    }

    // MARK: VirtioDevice

    public var deviceType: UInt32 { VirtioDeviceType.socket }
    public var deviceFeatures: UInt64 { 0 }
    public var queueMaximumSizes: [UInt16] { [256, 256, 256] }

    /// Config space: guest_cid, u64 little endian.
    public func readConfiguration(offset: Int, count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return (0..<count).map { index in
            let position = offset + index
            guard position >= 0, position < 8 else { return 0 }
            return UInt8(truncatingIfNeeded: guestCID >> (8 * UInt64(position)))
        }
    }

    public func writeConfiguration(offset: Int, bytes: [UInt8]) {}

    public func activate(_ context: VirtioDeviceContext) throws {
        try lock.withLock {
            guard !tornDown else { throw VsockError.tornDown }
            guard context.queues.count >= 3 else { throw VsockError.missingQueues(context.queues.count) }
            // Made by init and kept until tearDown: no thread binds a socket after set-up.
            guard listener != nil else { throw VsockError.tornDown }
            self.context = context
            activation &+= 1
            registerListener()
        }
    }

    public func queueNotified(_ index: Int) {
        lock.withLock {
            guard context != nil else { return }
            switch index {
            case VsockDevice.txQueue:
                processTx()
                processRx()
            case VsockDevice.rxQueue:
                processRx()
            default:
                break  // event queue: buffers wait for a transport-reset event we never send
            }
        }
    }

    public func reset() {
        lock.withLock {
            closeEverything(keepingListener: true)
            context = nil
            activation &+= 1
        }
    }

    // MARK: Backend work

    /// Runs `work` for a socket event or timer: under the transport's lock, then ours, only if
    /// the device is still in the activation the event belongs to; then fills rx buffers.
    func backend(_ work: (VsockDevice) -> Void) {
        let (current, generation) = lock.withLock { (context, activation) }
        guard let current else { return }
        current.serialized {
            lock.withLock {
                guard context != nil, activation == generation else { return }
                work(self)
                processRx()
            }
        }
    }

    /// Runs `work` after `nanoseconds`, as backend work on the event loop's thread (where
    /// the device's socket events run too).
    func schedule(after nanoseconds: UInt64, _ work: @escaping @Sendable (VsockDevice) -> Void) {
        eventLoop.schedule(after: nanoseconds) { [weak self] in
            self?.backend(work)
        }
    }

    static func now() -> UInt64 { EventLoop.now() }

    func makeID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }

    /// Closes all connections, pending clients and, unless kept (no longer watched), the
    /// listener; forgets queued packets.
    func closeEverything(keepingListener: Bool = false) {
        for connection in connectionsByID.values {
            if connection.registeredEvents != nil { eventLoop.unregister(connection.fd) }
            VsockUnixSocket.close(connection.fd)
            connection.state = .closed
        }
        connections.removeAll()
        connectionsByID.removeAll()
        for client in pendingClients.values {
            eventLoop.unregister(client.fd)
            VsockUnixSocket.close(client.fd)
        }
        pendingClients.removeAll()
        controlQueue.removeAll()
        dataQueue.removeAll()
        resetQueue.removeAll()
        heldRxChain = nil
        nextHostPort = VsockDevice.firstHostPort
        if let listener {
            if listenerRegistered { eventLoop.unregister(listener.fd) }
            if !keepingListener {
                VsockUnixSocket.close(listener)
                self.listener = nil
            }
        }
        listenerRegistered = false
    }

    // MARK: Test and diagnostics hooks

    /// Live connections (established or waiting for the guest).
    var connectionCount: Int { lock.withLock { connections.count } }
}

// MARK: Snapshot and restore
extension VsockDevice {
    /// An rx buffer held for later goes back to the ring, so the snapshot's queue state
    /// counts only buffers that were filled.
    public func prepareForSnapshot() {
        lock.withLock {
            guard heldRxChain != nil, let context else { return }
            try? context.queues[VsockDevice.rxQueue].undoPop(memory: context.memory)
            heldRxChain = nil
        }
    }

    /// Connections cannot be saved (their host sockets stay with this process): a snapshot
    /// waits until there are none. The guest's listeners (the agent's) need no connection;
    /// the host dials again after a restore.
    public var snapshotObstacle: String? {
        lock.withLock {
            let open = connections.count + pendingClients.count
            return open == 0 ? nil : "vsock has \(open) open connection\(open == 1 ? "" : "s") (close them and retry)"
        }
    }

}

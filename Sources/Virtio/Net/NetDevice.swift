import CLinux
import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

/// What a virtio-net device sends frames to and reads frames from: a descriptor with
/// datagram semantics (one read or write = one frame, each behind a 12-byte virtio-net
/// header). A TAP in the product; a SOCK_SEQPACKET socketpair stands in for it in tests.
public protocol NetBackend: AnyObject, Sendable {
    var descriptor: Int32 { get }
    /// Which offloads may appear in frames read from the backend (TUN_F_* flags); false
    /// if it cannot. A backend without the notion (a socketpair) accepts any.
    func setOffloads(_ flags: UInt32) -> Bool
}

extension TapDevice: NetBackend {}

/// virtio-net (device ID 1) with one receive and one transmit queue and the checksum and
/// TSO offloads a TAP gives for free: the guest may send frames with a partial checksum
/// and up to 64 KiB segments (the host kernel finishes or segments them), and receives
/// them that way when its driver accepts it (the TAP is told with TUNSETOFFLOAD). On a
/// kvm_pvm host, where the guest kernel is emulated, that is the guest's checksum and
/// segmentation work moved to the host.
/// Frames move straight between guest buffers and the backend with readv/writev on guest
/// memory: nothing is copied through the VMM. Receiving is level-triggered: the backend is
/// polled only while the guest has posted receive buffers, and polling resumes on the
/// receive queue's notification.
public final class NetDevice: VirtioDevice, @unchecked Sendable {
    /// struct virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size, csum_start,
    /// csum_offset, num_buffers): with VIRTIO_F_VERSION_1 every frame carries all 12 bytes.
    public static let headerSize = 12
    static let receiveQueue = 0, transmitQueue = 1
    /// Feature bits (virtio 1.2, 5.1.3).
    public enum Feature {
        public static let checksum: UInt64 = 1 << 0
        public static let guestChecksum: UInt64 = 1 << 1
        public static let guestTSO4: UInt64 = 1 << 7
        public static let guestTSO6: UInt64 = 1 << 8
        public static let guestECN: UInt64 = 1 << 9
        public static let hostTSO4: UInt64 = 1 << 11
        public static let hostTSO6: UInt64 = 1 << 12
        public static let hostECN: UInt64 = 1 << 13
        public static let mtu: UInt64 = 1 << 3
        public static let mac: UInt64 = 1 << 5
        public static let mergeableReceiveBuffers: UInt64 = 1 << 15
        public static let status: UInt64 = 1 << 16
    }
    /// VIRTIO_NET_S_LINK_UP in the config space's status field.
    static let linkUp: UInt16 = 1
    /// A frame without offloads is at most the MTU plus an Ethernet header and a VLAN tag.
    static let frameOverhead = 18
    /// The most frames received per wake-up, so a busy backend cannot hold the event loop
    /// (the rest comes on the next round: polling is level-triggered).
    static let framesPerRound = 64

    public let deviceType = VirtioDeviceType.network
    /// No UFO (Linux no longer offers it). With mergeable receive buffers a driver that
    /// takes guest TSO posts page-sized buffers and a large frame spans several; without,
    /// it posts a 64 KiB chain per frame, and a ring of 256 descriptors holds 13 of them.
    public let deviceFeatures = Feature.mac | Feature.mtu | Feature.status
        | Feature.checksum | Feature.hostTSO4 | Feature.hostTSO6 | Feature.hostECN
        | Feature.guestChecksum | Feature.guestTSO4 | Feature.guestTSO6 | Feature.guestECN
        | Feature.mergeableReceiveBuffers
    /// The largest frame a TSO-capable guest may hand over: a 64 KiB segment and its
    /// Ethernet header (Linux's GSO limit).
    static let largestSegment = 65536 + 18
    /// readv/writev take at most IOV_MAX (1024) vectors: a chain with more is malformed.
    static let maximumVectors = 1024
    public let queueMaximumSizes: [UInt16] = [256, 256]
    public let mac: MACAddress
    public let mtu: UInt16
    private let backend: any NetBackend
    private let eventLoop: EventLoop
    private let report: @Sendable (String) -> Void

    // Guarded by the transport's lock (every entry point runs under it).
    private var context: VirtioDeviceContext?
    private var polling = false
    /// Whether the driver accepted host TSO: transmit frames may then exceed the MTU.
    private var acceptsLargeTransmits = false
    /// Whether the driver accepted mergeable receive buffers: a frame may then span
    /// several receive chains, named by num_buffers in the first one's header.
    private var mergesReceiveBuffers = false
    /// The most bytes (header included) one frame from the backend can take: what the
    /// mergeable path gathers buffers for before it reads.
    private var largestReceive = 0
    /// The chains gathered for one frame (kept to spare an allocation per frame).
    private var gathered: [DescriptorChain] = []
    private var vectors: [iovec] = []
    /// What the device did, for tests and the VMM's report: frames each way, frames
    /// dropped (the backend could not take one, or the guest's buffer was too small) and
    /// malformed chains.
    public private(set) var counters = Counters()

    public struct Counters: Sendable, Equatable {
        public var received = 0, transmitted = 0, dropped = 0, malformed = 0
    }

    /// `mtu` must lie in 68...65535 (IPv4's minimum; the field's maximum).
    public init(backend: any NetBackend, mac: MACAddress, mtu: UInt16 = 1500, eventLoop: EventLoop,
                report: @escaping @Sendable (String) -> Void = { _ in }) throws(NetDeviceError) {
        guard mtu >= 68 else { throw .invalidSetting("MTU \(mtu) is below 68, the least IPv4 allows") }
        guard !mac.isMulticast else { throw .invalidSetting("MAC \(mac) is a multicast address, not one a NIC can have") }
        self.backend = backend
        self.mac = mac
        self.mtu = mtu
        self.eventLoop = eventLoop
        self.report = report
        vectors.reserveCapacity(Int(queueMaximumSizes.max() ?? 256))
    }

    /// The backend may close its descriptor once the device is gone (its last owner): the
    /// event loop must stop watching that number first, or it polls whatever file is opened
    /// under it next.
    deinit {
        if polling { eventLoop.unregister(backend.descriptor) }
    }

    // MARK: Config space: mac[6], status u16, max_virtqueue_pairs u16, mtu u16.

    var configuration: [UInt8] {
        mac.bytes + [UInt8(NetDevice.linkUp & 0xFF), UInt8(NetDevice.linkUp >> 8), 1, 0, UInt8(mtu & 0xFF), UInt8(mtu >> 8)]
    }

    public func readConfiguration(offset: Int, count: Int) -> [UInt8] {
        let space = configuration
        return (0..<count).map { index in
            let (position, overflow) = offset.addingReportingOverflow(index)
            return !overflow && position >= 0 && position < space.count ? space[position] : 0
        }
    }

    /// The MAC is the driver's to set only through VIRTIO_NET_F_CTRL_MAC_ADDR, not offered.
    public func writeConfiguration(offset: Int, bytes: [UInt8]) {}

    public func activate(_ context: VirtioDeviceContext) throws {
        let accepted = context.acceptedFeatures
        acceptsLargeTransmits = accepted & (Feature.hostTSO4 | Feature.hostTSO6) != 0
        mergesReceiveBuffers = accepted & Feature.mergeableReceiveBuffers != 0
        let receiveOffloads = NetDevice.tapOffloads(forAccepted: accepted)
        let segments = receiveOffloads & UInt32(CLINUX_TUN_F_TSO4 | CLINUX_TUN_F_TSO6) != 0
        largestReceive = NetDevice.headerSize + (segments ? NetDevice.largestSegment : Int(mtu) + NetDevice.frameOverhead)
        guard backend.setOffloads(receiveOffloads) else {
            throw NetDeviceError.invalidSetting("the TAP refused the receive offloads 0x\(String(receiveOffloads, radix: 16)) the driver accepted")
        }
        self.context = context
        startPolling()
    }

    public func reset() {
        stopPolling()
        context = nil
        acceptsLargeTransmits = false
        mergesReceiveBuffers = false
        // A driver that comes back may accept less: whole frames until it says otherwise.
        _ = backend.setOffloads(0)
    }

    /// The TUN_F_* flags matching the receive offloads the driver accepted.
    static func tapOffloads(forAccepted accepted: UInt64) -> UInt32 {
        guard accepted & Feature.guestChecksum != 0 else { return 0 }
        var flags = UInt32(CLINUX_TUN_F_CSUM)
        if accepted & Feature.guestTSO4 != 0 { flags |= UInt32(CLINUX_TUN_F_TSO4) }
        if accepted & Feature.guestTSO6 != 0 { flags |= UInt32(CLINUX_TUN_F_TSO6) }
        if accepted & Feature.guestECN != 0, flags & (UInt32(CLINUX_TUN_F_TSO4) | UInt32(CLINUX_TUN_F_TSO6)) != 0 {
            flags |= UInt32(CLINUX_TUN_F_TSO_ECN)
        }
        return flags
    }

    public func queueNotified(_ index: Int) {
        switch index {
        case NetDevice.receiveQueue:
            // New receive buffers: frames waiting in the backend can go in now.
            startPolling()
            receive()
        case NetDevice.transmitQueue:
            transmit()
        default:
            break
        }
    }

    // MARK: Receive (backend -> guest)

    private func startPolling() {
        guard context != nil, !polling else { return }
        polling = true
        eventLoop.register(backend.descriptor) { [weak self] _ in
            guard let self, let context = self.context else { return }
            context.serialized { self.receive() }
        }
    }

    private func stopPolling() {
        guard polling else { return }
        polling = false
        eventLoop.unregister(backend.descriptor)
    }

    /// Moves waiting frames into the guest's receive buffers until either runs out.
    func receive() {
        guard let context else { return }
        if mergesReceiveBuffers { return receiveMerging(context) }
        let queue = context.queues[NetDevice.receiveQueue]
        var completed = false
        defer { if completed { context.signalUsed(NetDevice.receiveQueue) } }
        for _ in 0..<NetDevice.framesPerRound {
            let chain: DescriptorChain
            do {
                guard let next = try queue.pop(memory: context.memory) else {
                    // No buffer to put a frame in: stop polling until the driver posts some.
                    stopPolling()
                    return
                }
                chain = next
            } catch {
                malformed("receive queue: \(error)")
                context.queueBroken(NetDevice.receiveQueue, error)
                return
            }
            guard NetDevice.canStartAFrame(chain) else {
                returnUnusable(chain, queue: queue, memory: context.memory)
                completed = true
                continue
            }
            let count = transfer(chain.writable, memory: context.memory) { readv(backend.descriptor, $0, $1) }
            if count < 0 {
                let code = errno
                try? queue.undoPop(memory: context.memory)
                if code != EAGAIN && code != EWOULDBLOCK {
                    // EMSGSIZE/EFAULT: the frame did not fit and is gone; anything else is the backend's.
                    counters.dropped += 1
                    continue
                }
                return
            }
            guard count >= NetDevice.headerSize else {
                try? queue.pushUsed(head: chain.head, length: 0, memory: context.memory)
                completed = true
                counters.dropped += 1
                continue
            }
            // num_buffers: one buffer per frame without VIRTIO_NET_F_MRG_RXBUF.
            _ = try? chain.write([1, 0], memory: context.memory, skipping: 10)
            try? queue.pushUsed(head: chain.head, length: UInt32(count), memory: context.memory)
            counters.received += 1
            completed = true
        }
    }

    /// The receive path with mergeable buffers. The backend is a datagram descriptor with
    /// no way to ask a frame's size first, so enough chains for the largest frame the
    /// guest may get are gathered before each read; those the frame did not reach are
    /// given back. When the driver has posted too few, polling stops until its next
    /// buffer notifies — unless the ring is full of buffers and can hold no more, when
    /// the read takes what there is (a larger frame is cut short, as a NIC would).
    private func receiveMerging(_ context: VirtioDeviceContext) {
        let queue = context.queues[NetDevice.receiveQueue]
        var completed = false
        defer { if completed { context.signalUsed(NetDevice.receiveQueue) } }
        for _ in 0..<NetDevice.framesPerRound {
            gathered.removeAll(keepingCapacity: true)
            var capacity = 0, vectorCount = 0
            /// Whether a read's vector limit, not the driver, ended the gathering.
            var atVectorLimit = false
            while capacity < largestReceive {
                let chain: DescriptorChain
                do {
                    guard let next = try queue.pop(memory: context.memory) else { break }
                    chain = next
                } catch {
                    queue.rewind(gathered.count)
                    malformed("receive queue: \(error)")
                    context.queueBroken(NetDevice.receiveQueue, error)
                    return
                }
                if gathered.isEmpty && !NetDevice.canStartAFrame(chain) {
                    returnUnusable(chain, queue: queue, memory: context.memory)
                    completed = true
                    continue
                }
                guard vectorCount + chain.writable.count <= NetDevice.maximumVectors else {
                    queue.rewind(1)
                    atVectorLimit = true
                    break
                }
                gathered.append(chain)
                capacity += chain.writableLength
                vectorCount += chain.writable.count
            }
            if gathered.isEmpty {
                // No buffer to put a frame in: stop polling until the driver posts some.
                stopPolling()
                return
            }
            if capacity < largestReceive && !atVectorLimit && gathered.count < Int(queue.size) {
                // Too few buffers for the largest frame: wait for the driver's next ones
                // (avail_event stays past them, so its next buffer notifies).
                queue.rewind(gathered.count)
                stopPolling()
                return
            }
            let count = transfer(gathered.lazy.flatMap(\.writable), memory: context.memory) { readv(backend.descriptor, $0, $1) }
            if count < 0 {
                let code = errno
                queue.rewind(gathered.count)
                if code != EAGAIN && code != EWOULDBLOCK {
                    // The frame did not fit and is gone, or the backend failed.
                    counters.dropped += 1
                    continue
                }
                return
            }
            completed = true
            guard count >= NetDevice.headerSize else {
                queue.rewind(gathered.count - 1)
                try? queue.pushUsed(head: gathered[0].head, length: 0, memory: context.memory)
                counters.dropped += 1
                continue
            }
            // The frame fills the gathered chains in order; the ones it did not reach go
            // back to the ring. num_buffers is written before the used entries publish it.
            var used = 0, covered = 0
            while used < gathered.count && covered < count {
                covered += gathered[used].writableLength
                used += 1
            }
            _ = try? gathered[0].write([UInt8(used & 0xFF), UInt8(used >> 8)], memory: context.memory, skipping: 10)
            var remaining = count
            for chain in gathered.prefix(used) {
                let length = min(remaining, chain.writableLength)
                try? queue.pushUsed(head: chain.head, length: UInt32(length), memory: context.memory)
                remaining -= length
            }
            queue.rewind(gathered.count - used)
            counters.received += 1
        }
    }

    // MARK: Transmit (guest -> backend)

    func transmit() {
        guard let context else { return }
        let queue = context.queues[NetDevice.transmitQueue]
        var completed = false
        defer { if completed { context.signalUsed(NetDevice.transmitQueue) } }
        let largest = NetDevice.headerSize + (acceptsLargeTransmits ? NetDevice.largestSegment : Int(mtu) + NetDevice.frameOverhead)
        // Everything available when the notification was read (at most the queue's size);
        // what the driver adds later comes with a notification of its own.
        for _ in 0..<Int(queue.size) {
            let chain: DescriptorChain
            do {
                guard let next = try queue.pop(memory: context.memory) else { return }
                chain = next
            } catch {
                malformed("transmit queue: \(error)")
                context.queueBroken(NetDevice.transmitQueue, error)
                return
            }
            let length = chain.readableLength
            if length <= NetDevice.headerSize || length > largest {
                malformed("transmit chain of \(length) bytes (a frame behind its header is 1...\(largest - NetDevice.headerSize) bytes)")
            } else if transfer(chain.readable, memory: context.memory, { writev(backend.descriptor, $0, $1) }) < 0 {
                // A full or gone backend drops the frame, as a NIC does; the guest's stack retransmits.
                counters.dropped += 1
            } else {
                counters.transmitted += 1
            }
            try? queue.pushUsed(head: chain.head, length: 0, memory: context.memory)
            completed = true
        }
    }

    // MARK: Helpers

    /// One readv/writev over `descriptors` in guest memory; -1 with errno when the call
    /// failed, or when a buffer lies outside guest memory (already checked by the queue).
    private func transfer(_ descriptors: some Sequence<Descriptor>, memory: GuestMemory,
                          _ call: (UnsafePointer<iovec>, Int32) -> Int) -> Int {
        vectors.removeAll(keepingCapacity: true)
        for descriptor in descriptors where descriptor.length > 0 {
            guard let buffer = try? memory.hostBuffer(at: descriptor.address, count: Int(descriptor.length)) else {
                errno = EFAULT
                return -1
            }
            vectors.append(iovec(iov_base: buffer.baseAddress, iov_len: buffer.count))
        }
        guard !vectors.isEmpty else { return 0 }
        // Safe: every iovec covers bytes hostBuffer checked to lie inside guest RAM, whose
        // mapping lives as long as `memory`, which the caller holds across the call.
        var result = -1
        repeat {
            result = vectors.withUnsafeBufferPointer { call($0.baseAddress!, Int32($0.count)) }
        } while result < 0 && errno == EINTR
        return result
    }

    /// Whether a receive chain can hold a frame's start: room for the header, and few
    /// enough buffers for one read.
    static func canStartAFrame(_ chain: DescriptorChain) -> Bool {
        chain.writableLength >= headerSize && chain.writable.count <= maximumVectors
    }

    /// Counts a receive chain that cannot start a frame and hands it back empty.
    private func returnUnusable(_ chain: DescriptorChain, queue: Virtqueue, memory: GuestMemory) {
        malformed("receive chain of \(chain.writableLength) bytes in \(chain.writable.count) buffers (a header needs \(NetDevice.headerSize), a read takes \(NetDevice.maximumVectors) at most)")
        try? queue.pushUsed(head: chain.head, length: 0, memory: memory)
    }

    private func malformed(_ what: String) {
        counters.malformed += 1
        if counters.malformed <= 10 { report("virtio-net: \(what)") }
    }
}

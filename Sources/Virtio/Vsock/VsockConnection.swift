/// Names a stream: the host-side port and the guest-side port (the CIDs are fixed: 2 and
/// the guest's).
struct VsockConnectionKey: Hashable, Sendable, CustomStringConvertible {
    var hostPort: UInt32
    var guestPort: UInt32

    var description: String { "host:\(hostPort)<->guest:\(guestPort)" }
}

/// Control packets a connection owes the guest, sent in this order before any data.
struct VsockPendingControl: OptionSet {
    let rawValue: UInt8
    static let request = VsockPendingControl(rawValue: 1 << 0)
    static let response = VsockPendingControl(rawValue: 1 << 1)
    static let creditUpdate = VsockPendingControl(rawValue: 1 << 2)
    static let creditRequest = VsockPendingControl(rawValue: 1 << 3)
    static let shutdown = VsockPendingControl(rawValue: 1 << 4)

    static let order: [(VsockPendingControl, VsockOperation)] = [
        (.request, .request), (.response, .response), (.creditUpdate, .creditUpdate),
        (.creditRequest, .creditRequest), (.shutdown, .shutdown),
    ]
}

/// One bridged stream: a host Unix socket and the guest's vsock endpoint, with the credit
/// bookkeeping of virtio spec 5.10.6.3 in both directions. Owned by `VsockDevice` and only
/// touched under its lock.
final class VsockConnection {
    enum State: Equatable {
        /// Host-initiated: REQUEST sent (or queued), waiting for the guest's RESPONSE.
        case requestSent
        case established
        case closed
    }

    let id: UInt64
    let key: VsockConnectionKey
    let fd: Int32
    var state: State

    // Host -> guest direction: the guest's credit.
    var peerBufferAllocation: UInt32 = 0
    var peerForwardCount: UInt32 = 0
    /// Payload bytes sent to the guest (tx_cnt).
    var transmitCount: UInt32 = 0
    /// Ran out of guest credit with data waiting; polling stops until credit returns.
    var creditBlocked = false
    /// A CREDIT_REQUEST went out for the current block.
    var creditRequested = false

    // Guest -> host direction: our credit.
    /// Payload bytes received from the guest (rx_cnt).
    var receiveCount: UInt32 = 0
    /// Guest bytes written to the host socket (fwd_cnt).
    var forwardCount: UInt32 = 0
    /// The fwd_cnt the guest last saw from us.
    var advertisedForwardCount: UInt32 = 0
    /// Bytes for the host socket that it has not taken yet: the `OK` line, then guest data.
    var toHost = VsockByteQueue()
    /// How many bytes at the front of `toHost` are our own (the `OK` line), not guest data.
    var preambleBytes = 0

    // Shutdown
    /// SHUTDOWN flags the guest has sent (VsockShutdown bits).
    var guestShutdown: UInt32 = 0
    /// The host socket reached end-of-file (the client will send nothing more).
    var hostEndOfFile = false
    /// The host client closed its socket entirely (not just its sending half).
    var hostHungUp = false
    /// We half-closed the host socket because the guest will send nothing more.
    var hostWriteClosed = false

    // Scheduling
    var pendingControl: VsockPendingControl = []
    var shutdownFlags: UInt32 = 0
    var inControlQueue = false
    var inDataQueue = false
    /// Events the event loop watches for this socket now; nil when not registered.
    var registeredEvents: Int16?
    /// Monotonic nanoseconds of the earliest pending timer check, if any.
    var timerDeadline: UInt64?
    /// Monotonic nanoseconds: when a host-initiated REQUEST gives up.
    var requestDeadline: UInt64 = 0
    /// Monotonic nanoseconds of the last guest packet or flush progress.
    var lastActivity: UInt64 = 0

    init(id: UInt64, key: VsockConnectionKey, fd: Int32, state: State) {
        self.id = id
        self.key = key
        self.fd = fd
        self.state = state
    }

    /// How many bytes the guest can take now: peer_buf_alloc - (tx_cnt - peer_fwd_cnt).
    var peerCredit: UInt32 {
        let inFlight = transmitCount &- peerForwardCount
        return inFlight >= peerBufferAllocation ? 0 : peerBufferAllocation - inFlight
    }

    /// Guest bytes buffered for the host socket.
    var bufferedGuestBytes: Int { toHost.count - preambleBytes }

    /// Waiting for the guest (or a host reader) to finish; bounded by the close grace.
    var isClosing: Bool { hostHungUp || guestShutdown == VsockShutdown.both }

    /// After a half-close by the host client, watch for it closing entirely (POLLHUP).
    var wantsHangUpNotice: Bool { state == .established && hostEndOfFile && !hostHungUp }

    /// Whether the host socket should be polled for input.
    var wantsRead: Bool {
        state == .established && !hostEndOfFile && guestShutdown & VsockShutdown.receive == 0
            && !inDataQueue && !creditBlocked
    }

    /// Takes the next control packet owed, in protocol order.
    func takeControl() -> (VsockOperation, UInt32)? {
        for (bit, operation) in VsockPendingControl.order where pendingControl.contains(bit) {
            pendingControl.remove(bit)
            return (operation, bit == .shutdown ? shutdownFlags : 0)
        }
        return nil
    }

    /// Records the credit fields every guest packet carries.
    func updatePeerCredit(from header: VsockHeader) {
        peerBufferAllocation = header.bufferAllocation
        peerForwardCount = header.forwardCount
    }
}

/// A host client that connected to the listener and has not finished its CONNECT line.
struct VsockPendingClient {
    let id: UInt64
    let fd: Int32
    var line: [UInt8] = []
}

/// Limits and timings; the defaults suit a Kata agent connection.
struct VsockTuning: Sendable {
    /// The receive buffer we advertise per connection (buf_alloc).
    var bufferAllocation: UInt32 = 256 << 10
    /// Send CREDIT_UPDATE once this many bytes were delivered since the guest last heard.
    var creditUpdateThreshold: UInt32 = 64 << 10
    /// Largest payload in one packet, either direction.
    var maximumPayload = 64 << 10
    /// How long a host-initiated REQUEST waits for the guest's answer.
    var requestTimeoutNanoseconds: UInt64 = 5_000_000_000
    /// How long a closing connection waits for the guest (or the host socket) before RST.
    var closeGraceNanoseconds: UInt64 = 2_000_000_000
    var maximumConnections = 1024
    /// RSTs owed for connections that no longer exist; beyond this they are dropped.
    var maximumPendingResets = 1024
}

import GuestMemory
import Virtio
import VirtioMockDriver
#if canImport(Glibc)
import Glibc
#endif

/// virtio-vsock through the real transport and `VsockDevice` (hybrid Unix-socket bridge),
/// with the device's `EventLoop` on its own thread as in the VMM. One thread here plays both
/// the guest (mock driver: rx buffers recycled, credit returned, RESPONSE to the REQUEST) and
/// the host client (a Unix socket that did `CONNECT <port>`), woken by poll(2) on the client
/// socket and on an eventfd the transport's interrupt raises.
///
/// Stream bytes follow a pattern (byte n of the stream is n mod 256); the receiving side
/// checks the first and last byte of everything it gets, and at the end of each run that
/// every byte sent arrived.
final class VsockBench {
    static let guestCID: UInt64 = 3
    static let guestPort: UInt32 = 5000
    /// What the guest advertises as its receive buffer (Linux's default, 256 KiB).
    static let guestBufferAllocation: UInt32 = 256 << 10
    /// Linux sends a credit update once less than this much of its advertised space is left
    /// (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE); so does this guest.
    static let creditUpdateSlack: UInt32 = 64 << 10
    static let rxSlots = 128
    static let txSlots = 64
    // Guest memory (32 MiB): rings at 0x10000 / 0x20000 / 0x30000, tx slots from 0x100000
    // (a 64-byte header area and a 64 KiB payload area each), rx slots from 0xA00000.
    static let ringBases: [UInt64] = [0x10000, 0x20000, 0x30000]
    static let txBase: UInt64 = 0x100000
    static let txSlotSize: UInt64 = (64 << 10) + 64
    static let rxBase: UInt64 = 0xA00000

    enum Direction { case hostToGuest, guestToHost }

    let directory: String
    let udsPath: String
    let loopThread: EventLoopThread
    let device: VsockDevice
    let memory: GuestMemory
    let interrupt: MockInterruptLine
    let transport: VirtioMMIOTransport
    let registers: RegisterDriver
    /// The host client's send buffer: the stream pattern, 256 bytes longer than any send.
    let pattern: [UInt8]

    init() throws {
        directory = try HostSupport.makeTemporaryDirectory(prefix: "/tmp/kasa-bench-")
        udsPath = directory + "/v.sock"
        loopThread = try EventLoopThread()
        device = try VsockDevice(guestCID: VsockBench.guestCID, udsPath: udsPath, eventLoop: loopThread.loop)
        memory = try GuestMemory(ranges: [(GuestAddress(0), 32 << 20)])
        let interrupt = try MockInterruptLine()
        self.interrupt = interrupt
        transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: { interrupt.raise() },
                                        report: { say("transport: \($0)") })
        registers = RegisterDriver(transport: transport)
        pattern = (0..<((256 << 10) + 256)).map { UInt8(truncatingIfNeeded: $0) }
        // tx payload areas hold the pattern from phase 0: any packet of a multiple of 256
        // bytes that starts at a stream offset multiple of 256 carries the right bytes.
        for slot in 0..<VsockBench.txSlots {
            try memory.write(bytes: pattern[0..<(64 << 10)], at: GuestAddress(VsockBench.txPayload(slot)))
        }
    }

    func finish() {
        registers.reset()
        device.tearDown()
        loopThread.stop()
        unlink(udsPath)
        rmdir(directory)
    }

    static func txHeader(_ slot: Int) -> UInt64 { txBase + UInt64(slot) * txSlotSize }
    static func txPayload(_ slot: Int) -> UInt64 { txHeader(slot) + 64 }

    /// One configuration: an untimed warm-up run, then `runs` runs; each run is a fresh
    /// device setup (reset through the status register), a new connection and a stream.
    func measure(_ direction: Direction, packetSize: Int, seconds: Double, runs: Int, warmUp: Double) throws -> ResultRow {
        _ = try run(direction, packetSize: packetSize, seconds: warmUp)
        var row = ResultRow(device: "vsock", test: direction == .hostToGuest
                                ? "host->guest, \(packetSize >> 10) KiB rx buffers"
                                : "guest->host, \(packetSize >> 10) KiB packets",
                            mebibytesPerSecond: [], operationsPerSecond: [], deviceShare: nil)
        for _ in 0..<runs {
            let (bytes, packets, elapsed) = try run(direction, packetSize: packetSize, seconds: seconds)
            row.mebibytesPerSecond.append(Double(bytes) / elapsed / 1_048_576)
            row.operationsPerSecond.append(Double(packets) / elapsed)
        }
        return row
    }

    /// Returns the stream bytes and data packets that crossed in the timed window, and its length.
    func run(_ direction: Direction, packetSize: Int, seconds: Double) throws -> (bytes: UInt64, packets: UInt64, seconds: Double) {
        let guest = try MockVsockGuest(bench: self, rxPayload: direction == .hostToGuest ? packetSize : 4096,
                                       txPacket: direction == .guestToHost ? packetSize : 0)
        let client = try HostClient(path: udsPath, pattern: pattern)
        defer { client.close() }
        try client.sendLine("CONNECT \(VsockBench.guestPort)\n")
        // The guest sees the REQUEST and accepts; the client reads `OK <port>`.
        try pump(guest: guest, client: client, until: now() + 5, what: "the REQUEST") { guest.hostPort != nil }
        try guest.accept()
        let line = try client.readLine(seconds: 5)
        guard line == "OK \(guest.hostPort!)\n" else { throw BenchError("expected OK \(guest.hostPort!), got \(line.debugDescription)") }

        client.sending = direction == .hostToGuest
        guest.sending = direction == .guestToHost
        func counted() -> (UInt64, UInt64) {
            direction == .hostToGuest ? (guest.received, guest.receivedPackets) : (client.received, guest.sentPackets)
        }
        let start = now()
        try pump(guest: guest, client: client, until: start + 0.05, what: nil) { false }
        let (bytes0, packets0) = counted()
        let t0 = now()
        try pump(guest: guest, client: client, until: t0 + seconds, what: nil) { false }
        let (bytes1, packets1) = counted()
        let t1 = now()

        // Stop the sender; everything sent must arrive, in order (checked on the way).
        client.sending = false
        guest.sending = false
        if direction == .hostToGuest {
            try pump(guest: guest, client: client, until: now() + 5, what: "the guest to receive all \(client.sent) bytes") {
                guest.received == client.sent
            }
        } else {
            try pump(guest: guest, client: client, until: now() + 5, what: "the host to receive all \(guest.sent) bytes") {
                client.received == guest.sent
            }
        }
        guard bytes1 > bytes0 else { throw BenchError("no bytes moved") }
        return (bytes1 - bytes0, packets1 - packets0, t1 - t0)
    }

    /// Runs guest and host until `done()` holds (or, with `what` nil, until `deadline`).
    func pump(guest: MockVsockGuest, client: HostClient, until deadline: Double, what: String?, _ done: () -> Bool) throws {
        var fds = [pollfd(fd: interrupt.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: client.fd, events: 0, revents: 0)]
        while !done() {
            let remaining = deadline - now()
            if remaining <= 0 {
                if let what { throw BenchError("timed out waiting for \(what)") }
                return
            }
            fds[1].events = (client.sending ? Int16(POLLOUT) : 0) | Int16(POLLIN)
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, Int32(min(remaining * 1000 + 1, 100)))
            if ready < 0 && errno != EINTR { throw BenchError("poll: \(String(cString: strerror(errno)))") }
            if fds[0].revents != 0 {
                interrupt.drain()
                registers.acknowledgeInterrupt()
                try guest.serviceInterrupt()
            }
            if fds[1].revents != 0 { try client.service() }
            try guest.send()
        }
    }
}

/// The guest's side of one connection: rx buffers, credit, tx packets.
final class MockVsockGuest {
    let bench: VsockBench
    let memory: GuestMemory
    let rx: MockDriver
    let tx: MockDriver
    let rxSlotSize: Int
    let txPacket: Int
    private var txFree: [Int]

    private(set) var hostPort: UInt32?
    /// Payload consumed (guest's fwd_cnt) and what the device was last told.
    private(set) var received: UInt64 = 0
    private(set) var receivedPackets: UInt64 = 0
    private var forwardCount: UInt32 = 0
    private var advertisedForwardCount: UInt32 = 0
    private var creditRequested = false
    /// The device's credit for guest->host data.
    private var peerBufferAllocation: UInt32 = 0
    private var peerForwardCount: UInt32 = 0
    private(set) var sent: UInt64 = 0
    private(set) var sentPackets: UInt64 = 0
    var sending = false

    /// Sets the device up through the registers (a reset first), fills the rx queue.
    init(bench: VsockBench, rxPayload: Int, txPacket: Int) throws {
        self.bench = bench
        memory = bench.memory
        rx = MockDriver(memory: memory, size: 256, base: VsockBench.ringBases[0])
        tx = MockDriver(memory: memory, size: 256, base: VsockBench.ringBases[1])
        let event = MockDriver(memory: memory, size: 256, base: VsockBench.ringBases[2])
        rxSlotSize = MockVsockHeader.size + rxPayload
        self.txPacket = txPacket
        txFree = Array((0..<VsockBench.txSlots).reversed())
        precondition(VsockBench.rxBase + UInt64(VsockBench.rxSlots * rxSlotSize) <= 32 << 20)
        bench.registers.reset()
        for driver in [rx, tx, event] { try driver.resetRings() }
        bench.registers.initialize(features: VirtioFeature.version1, drivers: [rx, tx, event])
        guard bench.transport.isActive else { throw BenchError("virtio-vsock did not activate") }
        bench.interrupt.drain()
        // Linux gives the event queue buffers too; this device never uses them.
        try event.add(head: 0, [.init(address: 0x40000, length: 8, writable: true)])
        for slot in 0..<VsockBench.rxSlots { try postRx(slot) }
        bench.transport.notify(queue: 0)
    }

    private func rxAddress(_ slot: Int) -> UInt64 { VsockBench.rxBase + UInt64(slot * rxSlotSize) }

    private func postRx(_ slot: Int) throws {
        try rx.add(head: UInt16(slot), [.init(address: rxAddress(slot), length: UInt32(rxSlotSize), writable: true)])
    }

    private func header(_ operation: MockVsockHeader.Operation, length: UInt32 = 0) -> MockVsockHeader {
        MockVsockHeader(sourceCID: VsockBench.guestCID, destinationCID: VsockDevice.hostCID, sourcePort: VsockBench.guestPort,
                        destinationPort: hostPort ?? 0, length: length, operation: operation,
                        bufferAllocation: VsockBench.guestBufferAllocation, forwardCount: forwardCount)
    }

    /// Queues one packet on tx (header, then payload from the slot's pattern area).
    private func queue(_ header: MockVsockHeader) throws {
        guard let slot = txFree.popLast() else { throw BenchError("no free tx slot") }
        try header.write(to: memory, at: VsockBench.txHeader(slot))
        var segments: [MockDriver.Segment] = [.init(address: VsockBench.txHeader(slot), length: UInt32(MockVsockHeader.size), writable: false)]
        if header.length > 0 { segments.append(.init(address: VsockBench.txPayload(slot), length: header.length, writable: false)) }
        try tx.add(head: UInt16(2 * slot), segments)
        advertisedForwardCount = forwardCount
    }

    /// Kicks tx; the device handles it synchronously, so the slots come back at once.
    private func kickTx() throws {
        bench.transport.notify(queue: 1)
        try tx.takeUsed { head, _ in txFree.append(Int(head) / 2) }
    }

    func accept() throws {
        try queue(header(.response))
        try kickTx()
    }

    /// The interrupt fired: take used rx buffers, act on them, give them back, return credit.
    func serviceInterrupt() throws {
        let recycled = try rx.takeUsed { head, length in
            let slot = Int(head)
            guard slot < VsockBench.rxSlots else { throw BenchError("rx used head \(head) was never made available") }
            let address = rxAddress(slot)
            let packet = try MockVsockHeader(memory: memory, at: address)
            guard Int(length) == MockVsockHeader.size + Int(packet.length) else {
                throw BenchError("rx used length \(length) for a packet of \(packet.length) bytes")
            }
            guard packet.destinationCID == VsockBench.guestCID, packet.destinationPort == VsockBench.guestPort else {
                throw BenchError("packet for \(packet.destinationCID):\(packet.destinationPort)")
            }
            peerBufferAllocation = packet.bufferAllocation
            peerForwardCount = packet.forwardCount
            switch packet.knownOperation {
            case .request:
                guard hostPort == nil else { throw BenchError("a second REQUEST") }
                hostPort = packet.sourcePort
            case .readWrite:
                guard packet.sourcePort == hostPort, packet.length > 0 else { throw BenchError("bad data packet \(packet)") }
                let first = try memory.read(UInt8.self, at: GuestAddress(address + UInt64(MockVsockHeader.size)))
                let last = try memory.read(UInt8.self, at: GuestAddress(address + UInt64(MockVsockHeader.size) + UInt64(packet.length) - 1))
                guard first == UInt8(truncatingIfNeeded: received), last == UInt8(truncatingIfNeeded: received + UInt64(packet.length) - 1) else {
                    throw BenchError("stream bytes out of order at offset \(received)")
                }
                received += UInt64(packet.length)
                receivedPackets += 1
                // The application reads it at once.
                forwardCount &+= packet.length
            case .creditUpdate:
                break
            case .creditRequest:
                creditRequested = true
            default:
                throw BenchError("unexpected packet \(packet)")
            }
            try postRx(slot)
        }
        if recycled > 0 { bench.transport.notify(queue: 0) }
        let unadvertised = forwardCount &- advertisedForwardCount
        if hostPort != nil && (creditRequested || VsockBench.guestBufferAllocation - min(unadvertised, VsockBench.guestBufferAllocation) < VsockBench.creditUpdateSlack) {
            creditRequested = false
            try queue(header(.creditUpdate))
            try kickTx()
        }
    }

    /// Sends data packets while credit and tx slots allow (each carries the guest's credit).
    func send() throws {
        guard sending, hostPort != nil else { return }
        var queued = 0
        while !txFree.isEmpty {
            let inFlight = UInt32(truncatingIfNeeded: sent) &- peerForwardCount
            let credit = inFlight >= peerBufferAllocation ? 0 : Int(peerBufferAllocation - inFlight)
            // Whole multiples of 256 keep the pattern's phase.
            let length = min(txPacket, credit) & ~255
            guard length > 0 else { break }
            try queue(header(.readWrite, length: UInt32(length)))
            sent += UInt64(length)
            sentPackets += 1
            queued += 1
        }
        if queued > 0 { try kickTx() }
    }
}

/// The host program's side: a Unix socket client of the hybrid vsock listener.
final class HostClient {
    let fd: Int32
    let pattern: [UInt8]
    var sending = false
    private(set) var sent: UInt64 = 0
    private(set) var received: UInt64 = 0
    private var buffer = [UInt8](repeating: 0, count: 256 << 10)
    private var closed = false

    init(path: String, pattern: [UInt8]) throws {
        fd = try HostSupport.connectUnixSocket(path: path)
        HostSupport.setNonBlocking(fd)
        self.pattern = pattern
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func sendLine(_ line: String) throws {
        let bytes = Array(line.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw BenchError("send CONNECT: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads up to a newline, one byte at a time (nothing after it is taken).
    func readLine(seconds: Double) throws -> String {
        var line: [UInt8] = []
        let deadline = now() + seconds
        while line.last != UInt8(ascii: "\n") {
            var byte: UInt8 = 0
            let count = recv(fd, &byte, 1, 0)
            if count == 1 { line.append(byte); continue }
            if count == 0 { throw BenchError("end-of-file before OK") }
            guard errno == EAGAIN || errno == EINTR else { throw BenchError("recv: \(String(cString: strerror(errno)))") }
            guard now() < deadline else { throw BenchError("no OK line within \(seconds) s") }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 10)
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// Reads what is there (checking the pattern) and, while sending, writes what fits.
    func service() throws {
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                guard buffer[0] == UInt8(truncatingIfNeeded: received), buffer[count - 1] == UInt8(truncatingIfNeeded: received + UInt64(count) - 1) else {
                    throw BenchError("host received bytes out of order at offset \(received)")
                }
                received += UInt64(count)
                continue
            }
            if count == 0 { throw BenchError("the device closed the host socket") }
            guard errno == EAGAIN || errno == EINTR else { throw BenchError("recv: \(String(cString: strerror(errno)))") }
            break
        }
        while sending {
            let phase = Int(sent & 255)
            let count = pattern.withUnsafeBytes { send(fd, $0.baseAddress! + phase, 256 << 10, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if count > 0 { sent += UInt64(count); continue }
            guard count < 0, errno == EAGAIN || errno == EINTR else { throw BenchError("send: \(String(cString: strerror(errno)))") }
            break
        }
    }
}

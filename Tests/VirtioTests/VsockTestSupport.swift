import Foundation
import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver
import HostOS
#if canImport(Glibc)
import Glibc
#endif

struct VsockTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `seconds` pass; never hangs a test.
func vsockWait(_ what: String, seconds: Double = 5, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if try condition() { return }
        if Date() > deadline { throw VsockTestFailure("timed out after \(seconds) s waiting for \(what)") }
        usleep(1000)
    }
}

/// A temporary directory for the test's sockets (short, to stay under the 107-byte limit).
func vsockTemporaryDirectory() throws -> String {
    do {
        return try HostSupport.makeTemporaryDirectory(prefix: "/tmp/kasa-vsock-")
    } catch {
        throw VsockTestFailure("\(error)")
    }
}

struct VsockPacket {
    var header: VsockHeader
    var payload: [UInt8]
    var operation: VsockOperation? { VsockOperation(rawValue: header.operation) }
}

/// One side of the test: the guest driver (three MockDriver queues in plain memory, with
/// fixed, recycled buffers so megabytes can flow) plus a real EventLoop thread and the
/// device. Every guest action happens under `transportLock`, as the MMIO transport would.
final class VsockHarness: @unchecked Sendable {
    static let guestCID: UInt64 = 3
    static let rxBase: UInt64 = 0x80_0000
    static let txBase: UInt64 = 0x40_0000
    static let txSlotSize = (64 << 10) + 256
    static let txSlots = 32

    let directory: String
    let udsPath: String
    let memory: GuestMemory
    let queues = [Virtqueue(maximumSize: 256), Virtqueue(maximumSize: 256), Virtqueue(maximumSize: 256)]
    let rxDriver: MockDriver
    let txDriver: MockDriver
    let eventDriver: MockDriver
    let transportLock = Lock()
    let loop: EventLoop
    let device: VsockDevice
    private(set) var context: VirtioDeviceContext!

    // Guarded by transportLock.
    let rxSlotSize: Int
    let rxSlotCount: Int
    let splitRx: Bool
    var autoRefillRx: Bool
    private var rxFree: [Int]
    private var txFree: [Int]
    private(set) var inbox: [VsockPacket] = []
    /// Used rx entries whose length disagreed with their header.
    private(set) var badRxLengths = 0
    var signals = [0, 0, 0]

    init(tuning: VsockTuning = VsockTuning(), rxSlots: Int = 64, rxSlotSize: Int = 4096, splitRx: Bool = false,
         autoRefillRx: Bool = true, provideRx: Bool = true) throws {
        directory = try vsockTemporaryDirectory()
        udsPath = directory + "/v.sock"
        memory = try MockDriver.makeMemory()
        rxDriver = try MockDriver(memory: memory, queue: queues[0], size: 256, base: 0x10000)
        txDriver = try MockDriver(memory: memory, queue: queues[1], size: 256, base: 0x110000)
        eventDriver = try MockDriver(memory: memory, queue: queues[2], size: 256, base: 0x210000)
        self.rxSlotSize = rxSlotSize
        rxSlotCount = rxSlots
        self.splitRx = splitRx
        self.autoRefillRx = autoRefillRx
        rxFree = Array(0..<rxSlots)
        txFree = Array(0..<VsockHarness.txSlots)
        loop = try EventLoop()
        let loop = self.loop
        let thread = Thread { loop.run() }
        thread.name = "vsock-test-loop"
        thread.start()
        device = try VsockDevice(guestCID: VsockHarness.guestCID, udsPath: udsPath, eventLoop: loop, tuning: tuning)
        let lock = transportLock
        context = VirtioDeviceContext(
            memory: memory, queues: queues, acceptedFeatures: VirtioFeature.version1,
            signalUsed: { [weak self] index in self?.signals[index] += 1 },
            serialized: { body in lock.withLock(body) })
        try transportLock.withLock {
            try device.activate(context)
            _ = try eventDriver.add([.writable(8)])
            if provideRx { refillRx() }
        }
    }

    /// Stops everything and removes the directory.
    func finish() {
        device.tearDown()
        loop.stop()
        _ = try? FileManager.default.removeItem(atPath: directory)
    }

    func guest<R>(_ body: () throws -> R) rethrows -> R { try transportLock.withLock(body) }

    // MARK: rx

    private func rxSlotAddress(_ slot: Int) -> UInt64 { VsockHarness.rxBase + UInt64(slot * rxSlotSize) }

    /// Makes every free rx slot available and notifies the device. Call with the lock held.
    func refillRx() {
        guard !rxFree.isEmpty else { return }
        for slot in rxFree {
            let address = rxSlotAddress(slot)
            if splitRx {
                // The header straddles two descriptors.
                try! rxDriver.writeDescriptor(UInt16(2 * slot), address: address, length: 20, flags: 2 | 1, next: UInt16(2 * slot + 1))
                try! rxDriver.writeDescriptor(UInt16(2 * slot + 1), address: address + 20, length: UInt32(rxSlotSize - 20), flags: 2, next: 0)
                try! rxDriver.makeAvailable(UInt16(2 * slot))
            } else {
                try! rxDriver.writeDescriptor(UInt16(slot), address: address, length: UInt32(rxSlotSize), flags: 2, next: 0)
                try! rxDriver.makeAvailable(UInt16(slot))
            }
        }
        rxFree.removeAll()
        device.queueNotified(0)
    }

    /// Moves used rx buffers into the inbox (and recycles them). Call with the lock held.
    func collectRx() {
        let used = try! rxDriver.takeUsed()
        for entry in used {
            let slot = splitRx ? Int(entry.head) / 2 : Int(entry.head)
            let bytes = try! rxDriver.read(rxSlotAddress(slot), Int(entry.length))
            rxFree.append(slot)
            guard let header = VsockHeader(bytes: bytes), bytes.count == VsockHeader.size + Int(header.length) else {
                badRxLengths += 1
                continue
            }
            inbox.append(VsockPacket(header: header, payload: Array(bytes[VsockHeader.size...])))
        }
        if autoRefillRx && !used.isEmpty { refillRx() }
    }

    /// Removes and returns the first packet matching `predicate`, waiting for it.
    func waitForPacket(_ what: String, seconds: Double = 5, where predicate: (VsockPacket) -> Bool) throws -> VsockPacket {
        var found: VsockPacket?
        try vsockWait(what, seconds: seconds) {
            guest {
                collectRx()
                if let index = inbox.firstIndex(where: predicate) { found = inbox.remove(at: index) }
            }
            return found != nil
        }
        return found!
    }

    /// Everything that arrives within `seconds` (for "nothing more must come" checks).
    func packets(during seconds: Double) -> [VsockPacket] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guest { collectRx() }
            usleep(2000)
        }
        return guest {
            collectRx()
            defer { inbox.removeAll() }
            return inbox
        }
    }

    func takeInbox() -> [VsockPacket] {
        guest {
            collectRx()
            defer { inbox.removeAll() }
            return inbox
        }
    }

    // MARK: tx

    /// A header from the guest (CID 3) to the host (CID 2).
    static func header(_ operation: VsockOperation, guestPort: UInt32, hostPort: UInt32, length: UInt32 = 0,
                       flags: UInt32 = 0, bufferAllocation: UInt32 = 256 << 10, forwardCount: UInt32 = 0) -> VsockHeader {
        VsockHeader(sourceCID: guestCID, destinationCID: VsockDevice.hostCID, sourcePort: guestPort, destinationPort: hostPort,
                    length: length, operation: operation.rawValue, flags: flags,
                    bufferAllocation: bufferAllocation, forwardCount: forwardCount)
    }

    /// Puts `buffers` (device-readable) in one chain on the tx queue and notifies the device.
    /// Call with the lock held.
    func sendRaw(_ buffers: [[UInt8]]) {
        precondition(!buffers.isEmpty && buffers.count <= 2 && buffers.joined().count <= VsockHarness.txSlotSize)
        reclaimTx()
        guard let slot = txFree.popLast() else {
            Issue.record("no free tx slot")
            return
        }
        var address = VsockHarness.txBase + UInt64(slot * VsockHarness.txSlotSize)
        for (index, bytes) in buffers.enumerated() {
            try! memory.write(bytes: bytes, at: GuestAddress(address))
            let isLast = index == buffers.count - 1
            try! txDriver.writeDescriptor(UInt16(2 * slot + index), address: address, length: UInt32(bytes.count),
                                          flags: isLast ? 0 : 1, next: UInt16(2 * slot + index + 1))
            address += UInt64(bytes.count)
        }
        try! txDriver.makeAvailable(UInt16(2 * slot))
        device.queueNotified(1)
        reclaimTx()
    }

    /// Sends a packet; `split` puts the first 20 header bytes in their own descriptor.
    func send(_ header: VsockHeader, _ payload: [UInt8] = [], split: Bool = false) {
        let bytes = header.bytes + payload
        guest { sendRaw(split ? [Array(bytes[0..<20]), Array(bytes[20...])] : [bytes]) }
    }

    private func reclaimTx() {
        for entry in try! txDriver.takeUsed() {
            #expect(entry.length == 0)
            txFree.append(Int(entry.head) / 2)
        }
    }
}

/// A host-side stream socket used by tests, with bounded waits on every operation.
final class VsockHostSocket {
    let fd: Int32
    private(set) var closed = false

    init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close() }

    static func connect(to path: String) throws -> VsockHostSocket {
        do {
            return VsockHostSocket(fd: try HostSupport.connectUnixSocket(path: path))
        } catch {
            throw VsockTestFailure("\(error)")
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func shutdownWrite() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Writes what the socket takes now; returns the count (0 when full).
    func writeSome(_ bytes: ArraySlice<UInt8>) throws -> Int {
        guard !bytes.isEmpty else { return 0 }
        let result = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if result >= 0 { return result }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        throw VsockTestFailure("send: \(String(cString: strerror(errno)))")
    }

    func writeAll(_ bytes: [UInt8], seconds: Double = 5) throws {
        var offset = 0
        try vsockWait("the socket to take \(bytes.count) bytes", seconds: seconds) {
            offset += try writeSome(bytes[offset...])
            return offset == bytes.count
        }
    }

    func write(_ text: String) throws { try writeAll(Array(text.utf8)) }

    /// Reads what is there now: nil at end-of-file, [] when nothing is waiting.
    func readSome(max: Int = 1 << 16) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: max)
        let result = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
        if result > 0 { return Array(buffer[0..<result]) }
        if result == 0 { return nil }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return [] }
        if errno == ECONNRESET { return nil }
        throw VsockTestFailure("recv: \(String(cString: strerror(errno)))")
    }

    func readExactly(_ count: Int, seconds: Double = 5) throws -> [UInt8] {
        var result: [UInt8] = []
        try vsockWait("\(count) bytes from the host socket (have \(result.count))", seconds: seconds) {
            guard let chunk = try readSome(max: count - result.count) else {
                throw VsockTestFailure("end-of-file after \(result.count) of \(count) bytes")
            }
            result += chunk
            return result.count == count
        }
        return result
    }

    /// Reads up to and including a newline (one byte at a time, so nothing after it is taken).
    func readLine(seconds: Double = 5) throws -> String {
        var line: [UInt8] = []
        try vsockWait("a line from the host socket (have \(String(decoding: line, as: UTF8.self).debugDescription))", seconds: seconds) {
            while true {
                guard let byte = try readSome(max: 1) else { throw VsockTestFailure("end-of-file before a newline") }
                if byte.isEmpty { return false }
                line += byte
                if byte == [UInt8(ascii: "\n")] { return true }
            }
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// Waits for end-of-file; any data before it is returned.
    @discardableResult
    func readUntilEndOfFile(seconds: Double = 5) throws -> [UInt8] {
        var data: [UInt8] = []
        try vsockWait("end-of-file on the host socket", seconds: seconds) {
            guard let chunk = try readSome() else { return true }
            data += chunk
            return false
        }
        return data
    }

    /// True if nothing arrives and the socket stays open for `seconds`.
    func staysQuiet(seconds: Double) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard let chunk = try readSome(), chunk.isEmpty else { return false }
            usleep(2000)
        }
        return true
    }
}

/// A host service the guest connects to (`<udsPath>_<port>`).
final class VsockHostListener {
    let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw VsockTestFailure("listen \(path): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        Glibc.close(fd)
        unlink(path)
    }

    func accept(seconds: Double = 5) throws -> VsockHostSocket {
        var accepted: Int32 = -1
        try vsockWait("a connection on \(path)", seconds: seconds) {
            accepted = Glibc.accept(fd, nil, nil)
            return accepted >= 0
        }
        return VsockHostSocket(fd: accepted)
    }
}

/// Deterministic pseudo-random numbers for reproducible fuzzing and payloads.
struct VsockRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 17
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

extension VsockHarness {
    /// Host client connects, sends CONNECT (plus `extra` in the same write); the guest sees the
    /// REQUEST and accepts. Returns the client and the host port the device chose.
    func openHostConnection(guestPort: UInt32, extra: [UInt8] = [], guestBufferAllocation: UInt32 = 256 << 10) throws
        -> (client: VsockHostSocket, hostPort: UInt32) {
        let client = try VsockHostSocket.connect(to: udsPath)
        try client.writeAll(Array("CONNECT \(guestPort)\n".utf8) + extra)
        let request = try waitForPacket("REQUEST to guest port \(guestPort)") {
            $0.operation == .request && $0.header.destinationPort == guestPort
        }
        let hostPort = request.header.sourcePort
        send(VsockHarness.header(.response, guestPort: guestPort, hostPort: hostPort, bufferAllocation: guestBufferAllocation))
        let line = try client.readLine()
        guard line == "OK \(hostPort)\n" else { throw VsockTestFailure("expected OK \(hostPort), got \(line.debugDescription)") }
        return (client, hostPort)
    }
}

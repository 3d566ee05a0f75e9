import Foundation
import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver
import HostOS

/// The vsock device behind the real virtio-mmio transport: register-level setup as Linux
/// does it, socket events taking the transport's lock, interrupts, and reset by status 0.
@Suite(.serialized) struct VsockTransportTests {
    final class Interrupts: @unchecked Sendable {
        private let lock = Lock()
        private var value = 0
        func raise() { lock.withLock { value += 1 } }
        var count: Int { lock.withLock { value } }
    }

    @Test func bridgesThroughTheMMIOTransport() throws {
        let directory = try vsockTemporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let loop = try EventLoop()
        Thread { loop.run() }.start()
        defer { loop.stop() }
        let path = directory + "/v.sock"
        let device = try VsockDevice(guestCID: 42, udsPath: path, eventLoop: loop)
        defer { device.tearDown() }
        let memory = try MockDriver.makeMemory()
        let interrupts = Interrupts()
        let transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: { interrupts.raise() })

        func write(_ offset: UInt64, _ value: UInt32) {
            transport.write(offset: offset, bytes: (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
        }
        func read(_ offset: UInt64) -> UInt32 {
            transport.read(offset: offset, size: 4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        }
        #expect(read(0x008) == 19)
        #expect(transport.read(offset: 0x100, size: 8) == [42, 0, 0, 0, 0, 0, 0, 0])
        #expect(read(0x100) == 42 && read(0x104) == 0)

        // Driver setup: reset, ACKNOWLEDGE, DRIVER, features (VERSION_1), FEATURES_OK, queues, DRIVER_OK.
        write(0x070, 0)
        write(0x070, 1)
        write(0x070, 1 | 2)
        write(0x024, 1)
        write(0x020, 1)
        write(0x070, 1 | 2 | 8)
        let bases: [UInt64] = [0x10000, 0x110000, 0x210000]
        for (index, base) in bases.enumerated() {
            write(0x030, UInt32(index))
            #expect(read(0x034) == 256)
            write(0x038, 256)
            write(0x080, UInt32(base))
            write(0x090, UInt32(base + 0x1000))
            write(0x0a0, UInt32(base + 0x2000))
            write(0x044, 1)
        }
        write(0x070, 1 | 2 | 4 | 8)
        #expect(transport.isActive)
        let rx = try MockDriver(memory: memory, queue: transport.queues[0], size: 256, base: bases[0])
        let tx = try MockDriver(memory: memory, queue: transport.queues[1], size: 256, base: bases[1])
        var rxAddresses: [UInt16: UInt64] = [:]
        for _ in 0..<8 {
            let (head, addresses) = try rx.add([.writable(4096)])
            rxAddresses[head] = addresses[0]
        }
        write(0x050, 0)

        func nextPacket(_ what: String) throws -> VsockPacket {
            var packet: VsockPacket?
            try vsockWait(what) {
                guard let used = try rx.takeUsed().first else { return false }
                let bytes = try rx.read(try #require(rxAddresses[used.head]), Int(used.length))
                let header = try #require(VsockHeader(bytes: bytes))
                packet = VsockPacket(header: header, payload: Array(bytes[VsockHeader.size...]))
                return true
            }
            return packet!
        }

        let client = try VsockHostSocket.connect(to: path)
        try client.write("CONNECT 1024\nping")
        let request = try nextPacket("REQUEST")
        #expect(request.operation == .request && request.header.destinationCID == 42 && request.header.destinationPort == 1024)
        #expect(interrupts.count >= 1)
        #expect(read(0x060) & 1 == 1)  // used-buffer interrupt pending
        write(0x064, 1)

        var response = VsockHarness.header(.response, guestPort: 1024, hostPort: request.header.sourcePort)
        response.sourceCID = 42
        try tx.add([.readable(response.bytes)])
        write(0x050, 1)
        #expect(try client.readLine() == "OK \(request.header.sourcePort)\n")
        let data = try nextPacket("data")
        #expect(data.operation == .readWrite && data.payload == Array("ping".utf8))
        #expect(try tx.takeUsed().count == 1)

        // The driver resets the device: the connections close; the listener stays, for the
        // next activation (a VMM running as its own user could not bind it again).
        write(0x070, 0)
        try client.readUntilEndOfFile()
        #expect(FileManager.default.fileExists(atPath: path), "the listener went with the reset")
        #expect(device.connectionCount == 0)
    }
}

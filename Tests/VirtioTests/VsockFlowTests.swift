import Foundation
import Testing
@testable import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// Credit-based flow control and bulk transfers through the hybrid-vsock bridge.
@Suite(.serialized) struct VsockFlowTests {
    @Test func hostDataNeverExceedsGuestCreditAndResumesAfterCreditUpdate() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 50, guestBufferAllocation: 1000)
        var random = VsockRandom(state: 1)
        let data = random.bytes(5000)
        try client.writeAll(data)

        var received: [UInt8] = []
        var creditRequests = 0
        func collect(_ seconds: Double) {
            for packet in harness.packets(during: seconds) {
                switch packet.operation {
                case .readWrite: received += packet.payload
                case .creditRequest: creditRequests += 1
                default: Issue.record("unexpected packet \(packet.header)")
                }
            }
        }
        try vsockWait("the first 1000 bytes") {
            collect(0.01)
            return received.count >= 1000
        }
        collect(0.2)
        #expect(received.count == 1000, "the guest allowed 1000 bytes")
        #expect(creditRequests == 1, "one CREDIT_REQUEST while blocked")

        // The guest consumed 600 bytes: exactly 600 more may come.
        harness.send(VsockHarness.header(.creditUpdate, guestPort: 50, hostPort: hostPort, bufferAllocation: 1000, forwardCount: 600))
        try vsockWait("1600 bytes") {
            collect(0.01)
            return received.count >= 1600
        }
        collect(0.2)
        #expect(received.count == 1600)

        // Plenty of room: the rest arrives, in order.
        harness.send(VsockHarness.header(.creditUpdate, guestPort: 50, hostPort: hostPort, bufferAllocation: 1 << 20, forwardCount: 1600))
        try vsockWait("all 5000 bytes") {
            collect(0.01)
            return received.count >= 5000
        }
        #expect(received == data)
        #expect(harness.badRxLengths == 0)
    }

    @Test func hostDataWaitsForRxBuffersWithoutLoss() throws {
        let harness = try VsockHarness(rxSlots: 4, autoRefillRx: false)
        defer { harness.finish() }
        let (client, _) = try harness.openHostConnection(guestPort: 51)
        var random = VsockRandom(state: 2)
        let data = random.bytes(100_000)
        try client.writeAll(data)
        var received: [UInt8] = []
        // Three buffers left after the REQUEST: three packets, then nothing until the guest adds more.
        var first: [VsockPacket] = []
        try vsockWait("three packets") {
            first += harness.takeInbox()
            return first.count >= 3
        }
        first += harness.packets(during: 0.1)
        #expect(first.count == 3)
        received += first.flatMap(\.payload)
        try vsockWait("all bytes as buffers come back", seconds: 10) {
            harness.guest { harness.refillRx() }
            received += harness.packets(during: 0.005).flatMap(\.payload)
            return received.count >= data.count
        }
        #expect(received == data)
    }

    @Test func guestDataWaitsForASlowHostReader() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 53)
        var random = VsockRandom(state: 3)
        let data = random.bytes(250_000)  // within our 256 KiB credit, more than the socket holds
        var offset = 0
        while offset < data.count {
            let count = min(60_000, data.count - offset)
            harness.send(VsockHarness.header(.readWrite, guestPort: 53, hostPort: hostPort, length: UInt32(count)), Array(data[offset..<(offset + count)]))
            offset += count
        }
        #expect(harness.device.connectionCount == 1)
        let buffered = harness.device.lock.withLock { harness.device.connectionsByID.values.first?.toHost.count ?? 0 }
        #expect(buffered > 0, "some bytes wait for the host socket")
        usleep(100_000)
        // Reading lets the device flush on POLLOUT; credit comes back as it does.
        #expect(try client.readExactly(data.count) == data)
        harness.send(VsockHarness.header(.creditRequest, guestPort: 53, hostPort: hostPort))
        try vsockWait("a CREDIT_UPDATE with every byte forwarded") {
            harness.takeInbox().contains { $0.operation == .creditUpdate && $0.header.forwardCount == UInt32(data.count) }
        }
    }

    @Test func guestOverrunningOurBufferIsReset() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 52)
        // The client never reads: the socket fills, then our 256 KiB buffer; more is a violation.
        let chunk = [UInt8](repeating: 7, count: 64 << 10)
        for _ in 0..<16 {
            harness.send(VsockHarness.header(.readWrite, guestPort: 52, hostPort: hostPort, length: UInt32(chunk.count)), chunk)
            if harness.device.connectionCount == 0 { break }
        }
        let reset = try harness.waitForPacket("RST for the overrun") { $0.operation == .reset }
        #expect(reset.header.sourcePort == hostPort)
        _ = client
    }

    /// Per-stream state of the bulk test, seen from the guest and from the host.
    final class Stream {
        let name: String
        let hostPort: UInt32
        let guestPort: UInt32
        let socket: VsockHostSocket
        let toGuest: [UInt8]
        let toHost: [UInt8]
        var hostSent = 0
        var hostReceived: [UInt8] = []
        var guestReceived: [UInt8] = []
        var guestSent = 0
        // Our (guest) receive credit.
        let guestBufferAllocation: UInt32 = 64 << 10
        var guestForwardCount: UInt32 = 0
        var guestAdvertised: UInt32 = 0
        var deviceTransmitted: UInt32 = 0
        // The device's receive credit.
        var deviceBufferAllocation: UInt32
        var deviceForwardCount: UInt32 = 0

        init(name: String, hostPort: UInt32, guestPort: UInt32, socket: VsockHostSocket, size: Int, seed: UInt64, deviceBufferAllocation: UInt32) {
            self.name = name
            self.hostPort = hostPort
            self.guestPort = guestPort
            self.socket = socket
            var random = VsockRandom(state: seed)
            toGuest = random.bytes(size)
            toHost = random.bytes(size)
            self.deviceBufferAllocation = deviceBufferAllocation
        }

        var done: Bool { hostReceived.count == toHost.count && guestReceived.count == toGuest.count }
    }

    @Test func bulkTransfersOnSeveralConnectionsArriveCompleteAndInOrder() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let size = 1 << 20
        var streams: [Stream] = []
        for (index, guestPort) in [6000, 6001].enumerated() {
            let (client, hostPort) = try harness.openHostConnection(guestPort: UInt32(guestPort), guestBufferAllocation: 64 << 10)
            streams.append(Stream(name: "host-initiated \(index)", hostPort: hostPort, guestPort: UInt32(guestPort), socket: client,
                                  size: size, seed: UInt64(100 + index), deviceBufferAllocation: 256 << 10))
        }
        var services: [VsockHostListener] = []
        for (index, hostPort) in [8000, 8001].enumerated() {
            let service = try VsockHostListener(path: harness.udsPath + "_\(hostPort)")
            services.append(service)
            let guestPort = UInt32(50000 + index)
            harness.send(VsockHarness.header(.request, guestPort: guestPort, hostPort: UInt32(hostPort), bufferAllocation: 64 << 10))
            let response = try harness.waitForPacket("RESPONSE from \(hostPort)") { $0.header.destinationPort == guestPort }
            #expect(response.operation == .response)
            streams.append(Stream(name: "guest-initiated \(index)", hostPort: UInt32(hostPort), guestPort: guestPort, socket: try service.accept(),
                                  size: size, seed: UInt64(200 + index), deviceBufferAllocation: response.header.bufferAllocation))
        }

        var random = VsockRandom(state: 0xB0B)
        let deadline = Date().addingTimeInterval(120)
        while !streams.allSatisfy(\.done) {
            guard Date() < deadline else {
                let progress = streams.map { "\($0.name): host got \($0.hostReceived.count), guest got \($0.guestReceived.count)" }
                throw VsockTestFailure("bulk transfer stalled: \(progress.joined(separator: "; "))")
            }
            var progress = false
            for stream in streams {
                // Host side: write what the socket takes, read what arrived.
                if stream.hostSent < stream.toGuest.count {
                    let count = try stream.socket.writeSome(stream.toGuest[stream.hostSent..<min(stream.hostSent + 65536, stream.toGuest.count)])
                    stream.hostSent += count
                    progress = progress || count > 0
                }
                if let chunk = try stream.socket.readSome() {
                    stream.hostReceived += chunk
                    progress = progress || !chunk.isEmpty
                } else if stream.hostReceived.count < stream.toHost.count {
                    throw VsockTestFailure("\(stream.name): host socket closed early")
                }
            }
            // Guest side: take what the device sent, honouring and checking credit.
            for packet in harness.takeInbox() {
                progress = true
                guard let stream = streams.first(where: { $0.hostPort == packet.header.sourcePort && $0.guestPort == packet.header.destinationPort }) else {
                    throw VsockTestFailure("packet for an unknown stream: \(packet.header)")
                }
                stream.deviceBufferAllocation = packet.header.bufferAllocation
                stream.deviceForwardCount = packet.header.forwardCount
                switch packet.operation {
                case .readWrite:
                    stream.deviceTransmitted &+= packet.header.length
                    let outstanding = stream.deviceTransmitted &- stream.guestAdvertised
                    guard outstanding <= stream.guestBufferAllocation else {
                        throw VsockTestFailure("\(stream.name): device sent \(outstanding) bytes beyond our fwd_cnt, buf_alloc is \(stream.guestBufferAllocation)")
                    }
                    stream.guestReceived += packet.payload
                    stream.guestForwardCount &+= packet.header.length
                case .creditUpdate:
                    break
                case .creditRequest:
                    stream.guestAdvertised = stream.guestForwardCount
                    harness.send(VsockHarness.header(.creditUpdate, guestPort: stream.guestPort, hostPort: stream.hostPort,
                                                     bufferAllocation: stream.guestBufferAllocation, forwardCount: stream.guestForwardCount))
                default:
                    throw VsockTestFailure("\(stream.name): unexpected \(packet.header)")
                }
            }
            for stream in streams {
                if stream.guestForwardCount &- stream.guestAdvertised >= 16 << 10 {
                    stream.guestAdvertised = stream.guestForwardCount
                    harness.send(VsockHarness.header(.creditUpdate, guestPort: stream.guestPort, hostPort: stream.hostPort,
                                                     bufferAllocation: stream.guestBufferAllocation, forwardCount: stream.guestForwardCount))
                }
                let credit = Int(stream.deviceBufferAllocation) - Int(UInt32(truncatingIfNeeded: stream.guestSent) &- stream.deviceForwardCount)
                let count = min(credit, 1 + random.below(16 << 10), stream.toHost.count - stream.guestSent)
                if count > 0 {
                    let payload = Array(stream.toHost[stream.guestSent..<(stream.guestSent + count)])
                    stream.guestAdvertised = stream.guestForwardCount
                    harness.send(VsockHarness.header(.readWrite, guestPort: stream.guestPort, hostPort: stream.hostPort, length: UInt32(count),
                                                     bufferAllocation: stream.guestBufferAllocation, forwardCount: stream.guestForwardCount),
                                 payload, split: random.below(4) == 0)
                    stream.guestSent += count
                    progress = true
                }
            }
            if !progress { usleep(200) }
        }
        for stream in streams {
            #expect(stream.hostReceived == stream.toHost, "\(stream.name): guest -> host")
            #expect(stream.guestReceived == stream.toGuest, "\(stream.name): host -> guest")
        }
        #expect(harness.badRxLengths == 0)
        #expect(harness.device.connectionCount == 4)
    }
}

import Foundation
import GuestMemory
import Testing
@testable import Virtio
import VirtioMockDriver
#if canImport(Glibc)
import Glibc
#endif

/// The hybrid-vsock bridge, driven from a mock guest driver on one side and real Unix
/// sockets on the other. Serialized: each test runs its own event-loop thread, and the
/// machines this runs on have few cores.
@Suite(.serialized) struct VsockTests {
    @Test func deviceIdentityAndConfigSpace() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let device = harness.device
        #expect(device.deviceType == 19)
        #expect(device.deviceFeatures == 0)
        #expect(device.queueMaximumSizes == [256, 256, 256])
        #expect(device.readConfiguration(offset: 0, count: 8) == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(device.readConfiguration(offset: 4, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        device.writeConfiguration(offset: 0, bytes: [9])  // read-only: ignored
        #expect(device.readConfiguration(offset: 0, count: 1) == [3])

        let loop = try EventLoop()
        let other = try VsockDevice(guestCID: 0x0203_0405, udsPath: harness.directory + "/b.sock", eventLoop: loop)
        #expect(other.readConfiguration(offset: 0, count: 4) == [0x05, 0x04, 0x03, 0x02])
        #expect(other.readConfiguration(offset: 2, count: 2) == [0x03, 0x02])
    }

    @Test func initializerValidatesCIDAndPath() throws {
        let directory = try vsockTemporaryDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let loop = try EventLoop()
        for cid: UInt64 in [0, 1, 2, 0xFFFF_FFFF, 1 << 40] {
            #expect(throws: VsockError.invalidGuestCID(cid)) { try VsockDevice(guestCID: cid, udsPath: directory + "/a", eventLoop: loop) }
        }
        let missing = directory + "/no/such/dir/v.sock"
        do {
            _ = try VsockDevice(guestCID: 3, udsPath: missing, eventLoop: loop)
            Issue.record("listening in a missing directory succeeded")
        } catch let error as VsockError {
            #expect("\(error)".hasPrefix("cannot listen on \(missing): "))
        }
        let long = directory + "/" + String(repeating: "x", count: 120)
        #expect(throws: VsockError.self) { try VsockDevice(guestCID: 3, udsPath: long, eventLoop: loop) }

        // A regular file in the way is not replaced...
        let regular = directory + "/file"
        _ = FileManager.default.createFile(atPath: regular, contents: Data([1]))
        #expect(throws: VsockError.cannotListen(path: regular, reason: "a file that is not a socket is in the way")) {
            try VsockDevice(guestCID: 3, udsPath: regular, eventLoop: loop)
        }
        // ...but a stale socket file is, and teardown removes ours.
        let stale = directory + "/stale.sock"
        let leftover = try VsockUnixSocket.listen(path: stale)
        Glibc.close(leftover.fd)  // as if the VMM had crashed: the file stays
        #expect(FileManager.default.fileExists(atPath: stale))
        let device = try VsockDevice(guestCID: 3, udsPath: stale, eventLoop: loop)
        _ = try VsockHostSocket.connect(to: stale)
        device.tearDown()
        #expect(!FileManager.default.fileExists(atPath: stale))
        // Dropping a device removes its socket file too.
        let dropped = directory + "/dropped.sock"
        do {
            let device = try VsockDevice(guestCID: 3, udsPath: dropped, eventLoop: loop)
            #expect(device.guestCID == 3 && FileManager.default.fileExists(atPath: dropped))
        }
        #expect(!FileManager.default.fileExists(atPath: dropped))
        #expect(throws: VsockError.tornDown) {
            try device.activate(VirtioDeviceContext(memory: try MockDriver.makeMemory(megabytes: 1), queues: [], acceptedFeatures: 0,
                                                    signalUsed: { _ in }, serialized: { $0() }))
        }
    }

    @Test func hostConnectReachesTheGuestAndBytesFlowBothWays() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let client = try VsockHostSocket.connect(to: harness.udsPath)
        // The stream's first bytes ride in the same write as the CONNECT line.
        try client.write("CONNECT 1024\nearly bytes")
        let request = try harness.waitForPacket("REQUEST") { $0.operation == .request }
        #expect(request.header.sourceCID == 2 && request.header.destinationCID == 3)
        #expect(request.header.destinationPort == 1024 && request.header.sourcePort >= 1024)
        #expect(request.header.type == 1 && request.header.length == 0 && request.payload.isEmpty)
        #expect(request.header.bufferAllocation == 256 << 10 && request.header.forwardCount == 0)
        let hostPort = request.header.sourcePort
        // Nothing is read from the client before the guest accepts.
        #expect(harness.packets(during: 0.1).isEmpty)

        harness.send(VsockHarness.header(.response, guestPort: 1024, hostPort: hostPort, bufferAllocation: 65536))
        #expect(try client.readLine() == "OK \(hostPort)\n")
        let early = try harness.waitForPacket("the bytes after CONNECT") { $0.operation == .readWrite }
        #expect(early.payload == Array("early bytes".utf8))
        #expect(early.header.sourcePort == hostPort && early.header.destinationPort == 1024)

        try client.write("more from the host")
        let more = try harness.waitForPacket("more host bytes") { $0.operation == .readWrite }
        #expect(more.payload == Array("more from the host".utf8))

        let reply = Array("hello from the guest".utf8)
        harness.send(VsockHarness.header(.readWrite, guestPort: 1024, hostPort: hostPort, length: UInt32(reply.count), bufferAllocation: 65536), reply, split: true)
        #expect(try client.readExactly(reply.count) == reply)
        // The OK line does not count as delivered guest data.
        harness.send(VsockHarness.header(.creditRequest, guestPort: 1024, hostPort: hostPort, bufferAllocation: 65536))
        let update = try harness.waitForPacket("CREDIT_UPDATE") { $0.operation == .creditUpdate }
        #expect(update.header.forwardCount == UInt32(reply.count))
        #expect(harness.device.connectionCount == 1)
    }

    @Test func splitConnectLineAndRxHeadersSplitAcrossDescriptors() throws {
        let harness = try VsockHarness(splitRx: true)
        defer { harness.finish() }
        let client = try VsockHostSocket.connect(to: harness.udsPath)
        try client.write("CONN")
        usleep(20_000)
        try client.write("ECT 77\r\n")
        usleep(20_000)
        try client.write("tail")
        let request = try harness.waitForPacket("REQUEST") { $0.operation == .request }
        #expect(request.header.destinationPort == 77)
        harness.send(VsockHarness.header(.response, guestPort: 77, hostPort: request.header.sourcePort))
        #expect(try client.readLine() == "OK \(request.header.sourcePort)\n")
        let data = try harness.waitForPacket("data") { $0.operation == .readWrite }
        #expect(data.payload == Array("tail".utf8))
    }

    @Test func badConnectLinesAreClosed() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        for text in ["HELLO\n", "CONNECT\n", "CONNECT abc\n", "CONNECT 99999999999\n", "connect 5\n", "CONNECT -1\n",
                     String(repeating: "C", count: 100)] {
            let client = try VsockHostSocket.connect(to: harness.udsPath)
            try client.write(text)
            try client.readUntilEndOfFile()
        }
        // A client that hangs up mid-line is dropped too.
        let quitter = try VsockHostSocket.connect(to: harness.udsPath)
        try quitter.write("CONNE")
        quitter.close()
        #expect(harness.packets(during: 0.1).isEmpty)
        try vsockWait("pending clients to go") { harness.device.lock.withLock { harness.device.pendingClients.isEmpty } }
        #expect(harness.device.connectionCount == 0)
    }

    @Test func guestResetAnswersAndClosesTheClient() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        // Nothing listens in the guest: it answers the REQUEST with RST.
        let refused = try VsockHostSocket.connect(to: harness.udsPath)
        try refused.write("CONNECT 9\n")
        let request = try harness.waitForPacket("REQUEST") { $0.operation == .request }
        harness.send(VsockHarness.header(.reset, guestPort: 9, hostPort: request.header.sourcePort))
        #expect(try refused.readUntilEndOfFile().isEmpty)

        // An established stream reset by the guest.
        let (client, hostPort) = try harness.openHostConnection(guestPort: 10)
        harness.send(VsockHarness.header(.reset, guestPort: 10, hostPort: hostPort))
        try client.readUntilEndOfFile()
        #expect(harness.device.connectionCount == 0)
        // An RST is never answered with an RST.
        #expect(harness.packets(during: 0.1).allSatisfy { $0.operation != .reset })
    }

    @Test func hostPortsAreUniqueAmongLiveConnections() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        var ports: Set<UInt32> = []
        var clients: [VsockHostSocket] = []
        for index in 0..<5 {
            let (client, hostPort) = try harness.openHostConnection(guestPort: 5000)
            #expect(hostPort >= 1024)
            #expect(!ports.contains(hostPort), "port \(hostPort) reused by connection \(index)")
            ports.insert(hostPort)
            clients.append(client)
        }
        #expect(harness.device.connectionCount == 5)
    }

    @Test func guestInitiatedConnectionsReachTheHostService() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let service = try VsockHostListener(path: harness.udsPath + "_7000")
        harness.send(VsockHarness.header(.request, guestPort: 40000, hostPort: 7000, bufferAllocation: 65536))
        let response = try harness.waitForPacket("RESPONSE") { $0.header.destinationPort == 40000 }
        #expect(response.operation == .response)
        #expect(response.header.sourcePort == 7000 && response.header.sourceCID == 2 && response.header.destinationCID == 3)
        let accepted = try service.accept()

        let toHost = Array("guest says hi".utf8)
        harness.send(VsockHarness.header(.readWrite, guestPort: 40000, hostPort: 7000, length: UInt32(toHost.count), bufferAllocation: 65536), toHost)
        #expect(try accepted.readExactly(toHost.count) == toHost)
        try accepted.write("host answers")
        let answer = try harness.waitForPacket("host data") { $0.operation == .readWrite }
        #expect(answer.payload == Array("host answers".utf8))
        #expect(answer.header.sourcePort == 7000 && answer.header.destinationPort == 40000)

        // Nothing listens on 7001: RST.
        harness.send(VsockHarness.header(.request, guestPort: 40001, hostPort: 7001))
        let reset = try harness.waitForPacket("RST for 7001") { $0.header.destinationPort == 40001 }
        #expect(reset.operation == .reset && reset.header.sourcePort == 7001)
        #expect(harness.device.connectionCount == 1)
    }

    @Test func guestShutdownFlushesThenClosesAndResets() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 20)
        let last = Array("last words".utf8)
        harness.send(VsockHarness.header(.readWrite, guestPort: 20, hostPort: hostPort, length: UInt32(last.count)), last)
        harness.send(VsockHarness.header(.shutdown, guestPort: 20, hostPort: hostPort, flags: 3))
        #expect(try client.readUntilEndOfFile() == last)
        let reset = try harness.waitForPacket("RST after SHUTDOWN") { $0.operation == .reset }
        #expect(reset.header.sourcePort == hostPort && reset.header.destinationPort == 20)
        #expect(harness.device.connectionCount == 0)
    }

    @Test func guestHalfCloseLetsTheHostStillSend() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 21)
        // The guest will send nothing more: the client reads end-of-file but may still write.
        harness.send(VsockHarness.header(.shutdown, guestPort: 21, hostPort: hostPort, flags: VsockShutdown.send))
        try client.readUntilEndOfFile()
        try client.write("still talking")
        let data = try harness.waitForPacket("host data after the guest's half-close") { $0.operation == .readWrite }
        #expect(data.payload == Array("still talking".utf8))
        // The client finishing too ends the stream.
        client.close()
        let reset = try harness.waitForPacket("RST once both sides are done") { $0.operation == .reset }
        #expect(reset.header.sourcePort == hostPort)
    }

    @Test func hostEndOfFileSendsShutdownThenResetsAfterTheGuestOrTheGrace() throws {
        var tuning = VsockTuning()
        tuning.closeGraceNanoseconds = 200_000_000
        let harness = try VsockHarness(tuning: tuning)
        defer { harness.finish() }

        // The guest answers our SHUTDOWN with its own.
        let (first, firstPort) = try harness.openHostConnection(guestPort: 30)
        try first.write("bye")
        first.close()
        let data = try harness.waitForPacket("data before EOF") { $0.operation == .readWrite }
        #expect(data.payload == Array("bye".utf8))
        let shutdown = try harness.waitForPacket("SHUTDOWN") { $0.operation == .shutdown }
        #expect(shutdown.header.flags == VsockShutdown.send && shutdown.header.sourcePort == firstPort)
        harness.send(VsockHarness.header(.shutdown, guestPort: 30, hostPort: firstPort, flags: 3))
        _ = try harness.waitForPacket("RST") { $0.operation == .reset && $0.header.sourcePort == firstPort }
        #expect(harness.device.connectionCount == 0)

        // The guest says nothing: RST after the grace period.
        let (second, secondPort) = try harness.openHostConnection(guestPort: 31)
        second.close()
        _ = try harness.waitForPacket("SHUTDOWN") { $0.operation == .shutdown && $0.header.sourcePort == secondPort }
        let started = Date()
        _ = try harness.waitForPacket("RST after the grace") { $0.operation == .reset && $0.header.sourcePort == secondPort }
        let waited = Date().timeIntervalSince(started)
        #expect(waited >= 0.1 && waited < 2, "RST came after \(waited) s; the grace is 0.2 s")
        #expect(harness.device.connectionCount == 0)
    }

    @Test func hostHalfCloseStillReceivesTheGuestsAnswer() throws {
        var tuning = VsockTuning()
        tuning.closeGraceNanoseconds = 100_000_000
        let harness = try VsockHarness(tuning: tuning)
        defer { harness.finish() }
        let (client, hostPort) = try harness.openHostConnection(guestPort: 32)
        try client.write("question")
        client.shutdownWrite()
        let question = try harness.waitForPacket("the question") { $0.operation == .readWrite }
        #expect(question.payload == Array("question".utf8))
        let shutdown = try harness.waitForPacket("SHUTDOWN") { $0.operation == .shutdown }
        #expect(shutdown.header.flags == VsockShutdown.send)
        // The guest takes its time, well past the grace: the half-open stream stays.
        #expect(harness.packets(during: 0.4).isEmpty)
        let answer = Array("a slow answer".utf8)
        harness.send(VsockHarness.header(.readWrite, guestPort: 32, hostPort: hostPort, length: UInt32(answer.count)), answer)
        #expect(try client.readExactly(answer.count) == answer)
        harness.send(VsockHarness.header(.shutdown, guestPort: 32, hostPort: hostPort, flags: 3))
        try client.readUntilEndOfFile()
        _ = try harness.waitForPacket("RST") { $0.operation == .reset && $0.header.sourcePort == hostPort }

        // A half-closed client that then closes entirely: RST after the grace.
        let (other, otherPort) = try harness.openHostConnection(guestPort: 33)
        other.shutdownWrite()
        _ = try harness.waitForPacket("SHUTDOWN") { $0.operation == .shutdown && $0.header.sourcePort == otherPort }
        #expect(harness.packets(during: 0.3).isEmpty)
        other.close()
        _ = try harness.waitForPacket("RST once the client is gone") { $0.operation == .reset && $0.header.sourcePort == otherPort }
        #expect(harness.device.connectionCount == 0)
    }

    @Test func unansweredRequestTimesOut() throws {
        var tuning = VsockTuning()
        tuning.requestTimeoutNanoseconds = 200_000_000
        let harness = try VsockHarness(tuning: tuning)
        defer { harness.finish() }
        let client = try VsockHostSocket.connect(to: harness.udsPath)
        try client.write("CONNECT 40\n")
        let request = try harness.waitForPacket("REQUEST") { $0.operation == .request }
        try client.readUntilEndOfFile()
        let reset = try harness.waitForPacket("RST after the timeout") { $0.operation == .reset }
        #expect(reset.header.sourcePort == request.header.sourcePort)
        // A late RESPONSE gets an RST.
        harness.send(VsockHarness.header(.response, guestPort: 40, hostPort: request.header.sourcePort))
        _ = try harness.waitForPacket("RST for the late RESPONSE") { $0.operation == .reset }
    }
}

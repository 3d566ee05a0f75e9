import Foundation
import Testing
@testable import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// Hostile or broken guests, resets and teardown.
@Suite(.serialized) struct VsockRobustnessTests {
    @Test func headerEncodingRoundTripsAndIsLittleEndian() {
        let header = VsockHeader(sourceCID: 0x0102_0304_0506_0708, destinationCID: 2, sourcePort: 0xAABB_CCDD, destinationPort: 1024,
                                 length: 5, operation: 5, flags: 3, bufferAllocation: 0x1000, forwardCount: 9)
        let bytes = header.bytes
        #expect(bytes.count == 44)
        #expect(Array(bytes[0..<8]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16..<20]) == [0xDD, 0xCC, 0xBB, 0xAA])
        #expect(Array(bytes[28..<32]) == [1, 0, 5, 0])
        #expect(VsockHeader(bytes: bytes) == header)
        #expect(VsockHeader(bytes: Array(bytes[0..<43])) == nil)
        #expect(VsockConnectLine.port(in: Array("CONNECT 1024".utf8)) == 1024)
        #expect(VsockConnectLine.port(in: Array("CONNECT 4294967295\r".utf8)) == 4_294_967_295)
        #expect(VsockConnectLine.port(in: Array("CONNECT 4294967296".utf8)) == nil)
        #expect(VsockConnectLine.port(in: Array("CONNECT  1".utf8)) == nil)
        #expect(VsockConnectLine.port(in: Array("CONNECT 1 ".utf8)) == nil)
    }

    @Test func malformedTxPacketsAreDroppedOrReset() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let service = try VsockHostListener(path: harness.udsPath + "_7100")

        // Dropped silently: too short for a header, empty, wrong CIDs, RST for nothing.
        harness.guest {
            harness.sendRaw([[UInt8](repeating: 0xAB, count: 20)])
            harness.sendRaw([[]])
            harness.sendRaw([[1, 2, 3], Array(repeating: 0, count: 30)])
        }
        var wrongSource = VsockHarness.header(.request, guestPort: 1, hostPort: 7100)
        wrongSource.sourceCID = 4
        harness.send(wrongSource)
        var wrongDestination = VsockHarness.header(.request, guestPort: 1, hostPort: 7100)
        wrongDestination.destinationCID = 3
        harness.send(wrongDestination)
        harness.send(VsockHarness.header(.reset, guestPort: 1, hostPort: 7100))
        #expect(harness.packets(during: 0.1).isEmpty)
        #expect(harness.device.connectionCount == 0)

        // Answered with RST: the stream can be named.
        var badType = VsockHarness.header(.request, guestPort: 2, hostPort: 7100)
        badType.type = 2
        harness.send(badType)
        harness.send(VsockHarness.header(.readWrite, guestPort: 3, hostPort: 7100, length: 100), Array(repeating: 1, count: 10))
        harness.send(VsockHarness.header(.readWrite, guestPort: 4, hostPort: 7100, length: 65537), Array(repeating: 1, count: 65537))
        var unknownOperation = VsockHarness.header(.request, guestPort: 5, hostPort: 7100)
        unknownOperation.operation = 99
        harness.send(unknownOperation)
        unknownOperation.operation = 0
        unknownOperation.sourcePort = 6
        harness.send(unknownOperation)
        for (index, operation) in [VsockOperation.response, .readWrite, .shutdown, .creditUpdate, .creditRequest].enumerated() {
            harness.send(VsockHarness.header(operation, guestPort: UInt32(10 + index), hostPort: 7100))
        }
        let resets = harness.packets(during: 0.2)
        #expect(resets.allSatisfy { $0.operation == .reset && $0.header.sourcePort == 7100 && $0.header.destinationCID == 3 })
        #expect(resets.map(\.header.destinationPort).sorted() == [2, 3, 4, 5, 6, 10, 11, 12, 13, 14])
        #expect(harness.device.connectionCount == 0)

        // A malformed packet on a live stream resets it.
        let (client, hostPort) = try harness.openHostConnection(guestPort: 60)
        harness.send(VsockHarness.header(.readWrite, guestPort: 60, hostPort: hostPort, length: 500), Array(repeating: 1, count: 499), split: true)
        _ = try harness.waitForPacket("RST for the live stream") { $0.operation == .reset && $0.header.sourcePort == hostPort }
        try client.readUntilEndOfFile()

        // The device still works.
        harness.send(VsockHarness.header(.request, guestPort: 61, hostPort: 7100))
        let response = try harness.waitForPacket("RESPONSE") { $0.header.destinationPort == 61 }
        #expect(response.operation == .response)
        _ = try service.accept()
        #expect(harness.badRxLengths == 0)
    }

    @Test func duplicateRequestResetsTheStream() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let service = try VsockHostListener(path: harness.udsPath + "_7300")
        harness.send(VsockHarness.header(.request, guestPort: 1, hostPort: 7300))
        _ = try harness.waitForPacket("RESPONSE") { $0.operation == .response }
        let accepted = try service.accept()
        harness.send(VsockHarness.header(.request, guestPort: 1, hostPort: 7300))
        _ = try harness.waitForPacket("RST") { $0.operation == .reset }
        try accepted.readUntilEndOfFile()
        #expect(harness.device.connectionCount == 0)
    }

    @Test func resetClosesEveryClientSocketButKeepsTheListener() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        let service = try VsockHostListener(path: harness.udsPath + "_7400")
        let (first, _) = try harness.openHostConnection(guestPort: 70)
        let (second, _) = try harness.openHostConnection(guestPort: 71)
        harness.send(VsockHarness.header(.request, guestPort: 72, hostPort: 7400))
        _ = try harness.waitForPacket("RESPONSE") { $0.operation == .response }
        let accepted = try service.accept()
        let waiting = try VsockHostSocket.connect(to: harness.udsPath)  // REQUEST sent, no answer
        try waiting.write("CONNECT 73\n")
        _ = try harness.waitForPacket("REQUEST") { $0.operation == .request && $0.header.destinationPort == 73 }
        let silent = try VsockHostSocket.connect(to: harness.udsPath)  // no CONNECT line yet
        try vsockWait("the silent client to be accepted") { harness.device.lock.withLock { !harness.device.pendingClients.isEmpty } }

        harness.guest { harness.device.reset() }
        for socket in [first, second, accepted, waiting, silent] {
            try socket.readUntilEndOfFile()
        }
        #expect(harness.device.connectionCount == 0)
        // The listener stays (a VMM running as its own user could not bind it again), not
        // accepted from: a client connecting meanwhile waits for the driver.
        #expect(FileManager.default.fileExists(atPath: harness.udsPath))
        let early = try VsockHostSocket.connect(to: harness.udsPath)
        try early.write("CONNECT 75\n")
        #expect(harness.packets(during: 0.2).isEmpty, "a reset device took a client's request")

        // The driver sets the device up again: the waiting client is served first.
        try harness.guest { try harness.device.activate(harness.context) }
        _ = try harness.waitForPacket("REQUEST from the client that waited") {
            $0.operation == .request && $0.header.destinationPort == 75
        }
        early.close()
        let (again, hostPort) = try harness.openHostConnection(guestPort: 74)
        #expect(hostPort == 1025, "the waiting client took host port 1024")
        try again.write("after reset")
        let data = try harness.waitForPacket("data") { $0.operation == .readWrite }
        #expect(data.payload == Array("after reset".utf8))

        harness.device.tearDown()
        try again.readUntilEndOfFile()
        #expect(!FileManager.default.fileExists(atPath: harness.udsPath))
    }

    @Test func seededRandomTxPacketsNeverCrashTheDevice() throws {
        var tuning = VsockTuning()
        tuning.closeGraceNanoseconds = 50_000_000
        tuning.requestTimeoutNanoseconds = 100_000_000
        let harness = try VsockHarness(tuning: tuning)
        defer { harness.finish() }
        let service = try VsockHostListener(path: harness.udsPath + "_7200")
        var live: [(VsockHostSocket, UInt32)] = []
        for port in [80, 81, 82] { live.append(try harness.openHostConnection(guestPort: UInt32(port))) }
        var accepted: [VsockHostSocket] = []

        var random = VsockRandom(state: 0xF022)
        let hostPorts = [7200, 7201] + live.map { Int($0.1) }
        for round in 0..<3000 {
            let hostPort = random.below(5) == 0 ? UInt32(truncatingIfNeeded: random.next()) : UInt32(hostPorts[random.below(hostPorts.count)])
            let guestPort = random.below(5) == 0 ? UInt32(truncatingIfNeeded: random.next()) : UInt32([80, 81, 82, 1, 2][random.below(5)])
            var header = VsockHarness.header(.readWrite, guestPort: guestPort, hostPort: hostPort)
            header.operation = UInt16(random.below(9))
            if random.below(10) == 0 { header.type = UInt16(truncatingIfNeeded: random.next()) }
            if random.below(10) == 0 { header.sourceCID = random.next() }
            if random.below(10) == 0 { header.destinationCID = random.next() }
            header.flags = random.below(3) == 0 ? UInt32(truncatingIfNeeded: random.next()) : UInt32(random.below(4))
            header.bufferAllocation = UInt32(truncatingIfNeeded: random.next())
            header.forwardCount = UInt32(truncatingIfNeeded: random.next())
            let payloadSize = random.below(8) == 0 ? random.below(65600) : random.below(2000)
            switch random.below(4) {
            case 0: header.length = UInt32(truncatingIfNeeded: random.next())
            case 1: header.length = UInt32(random.below(payloadSize + 10))
            default: header.length = UInt32(payloadSize)
            }
            var bytes = header.bytes + random.bytes(payloadSize)
            if random.below(20) == 0 { bytes = Array(bytes.prefix(random.below(44))) }
            let cut = random.below(bytes.count + 1)
            harness.guest {
                if random.below(3) == 0 && cut > 0 && cut < bytes.count {
                    harness.sendRaw([Array(bytes[..<cut]), Array(bytes[cut...])])
                } else {
                    harness.sendRaw([bytes])
                }
            }
            if round % 50 == 0 {
                _ = harness.takeInbox()
                while true {
                    let fd = Glibc.accept(service.fd, nil, nil)
                    if fd < 0 { break }
                    let socket = VsockHostSocket(fd: fd)
                    if random.below(2) == 0 { accepted.append(socket) } else { socket.close() }
                }
                for (socket, _) in live { _ = try? socket.readSome() }
                for socket in accepted { _ = try? socket.readSome() }
            }
        }
        _ = harness.takeInbox()
        #expect(harness.badRxLengths == 0)
        // Still alive and correct.
        harness.send(VsockHarness.header(.request, guestPort: 9999, hostPort: 7200))
        let response = try harness.waitForPacket("RESPONSE after the fuzzing") { $0.header.destinationPort == 9999 && $0.header.sourcePort == 7200 }
        #expect(response.operation == .response)
        let (client, hostPort) = try harness.openHostConnection(guestPort: 12345)
        try client.write("ok")
        let data = try harness.waitForPacket("data") { $0.operation == .readWrite && $0.header.sourcePort == hostPort }
        #expect(data.payload == Array("ok".utf8))
    }
}

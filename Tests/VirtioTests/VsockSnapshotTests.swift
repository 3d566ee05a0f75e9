import Testing
@testable import Virtio

/// A snapshot cannot carry a vsock connection (its host socket stays with the old process),
/// so the device names open connections as the obstacle, and none once they are closed.
@Suite struct VsockSnapshotTests {
    @Test func openConnectionsBlockASnapshotUntilClosed() throws {
        let harness = try VsockHarness()
        defer { harness.finish() }
        #expect(harness.device.snapshotObstacle == nil, "an idle device can be saved")

        let client = try VsockHostSocket.connect(to: harness.udsPath)
        try client.write("CONNECT 1024\n")
        let request = try harness.waitForPacket("REQUEST") { $0.operation == .request }
        let hostPort = request.header.sourcePort
        harness.send(VsockHarness.header(.response, guestPort: 1024, hostPort: hostPort, bufferAllocation: 65536))
        #expect(try client.readLine() == "OK \(hostPort)\n")
        #expect(harness.device.snapshotObstacle?.contains("1 open connection") == true,
                "\(String(describing: harness.device.snapshotObstacle))")

        // The host closes; the guest answers the device's shutdown with a reset.
        client.close()
        _ = try harness.waitForPacket("SHUTDOWN") { $0.operation == .shutdown }
        harness.send(VsockHarness.header(.reset, guestPort: 1024, hostPort: hostPort))
        try vsockWait("the connection to go") { harness.device.snapshotObstacle == nil }
    }
}

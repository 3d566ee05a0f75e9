import Foundation
import ShimProtocol
import SwiftProtobuf
import Testing

/// The generated messages against bytes written by hand from the field numbers containerd
/// uses (Sources/ShimProtocol/Proto/FIELDS.md): if a number drifts, these fail.
@Suite struct WireFactsTests {
    /// tag byte = field number << 3 | wire type (2 = length-delimited, 0 = varint).
    static func field(_ number: UInt8, _ text: String) -> [UInt8] {
        [number << 3 | 2, UInt8(text.utf8.count)] + Array(text.utf8)
    }

    @Test func createTaskRequestFields() throws {
        var request = Containerd_Task_V2_CreateTaskRequest()
        request.id = "t1"
        request.bundle = "/b"
        var mount = Containerd_Types_Mount()
        mount.type = "overlay"
        mount.source = "overlay"
        mount.options = ["lowerdir=/l"]
        request.rootfs = [mount]
        request.terminal = true
        request.stdin = "/i"
        request.stdout = "/o"
        request.stderr = "/e"
        let mountBytes = Self.field(1, "overlay") + Self.field(2, "overlay") + Self.field(4, "lowerdir=/l")
        let expected = Self.field(1, "t1") + Self.field(2, "/b") + [3 << 3 | 2, UInt8(mountBytes.count)] + mountBytes
            + [4 << 3 | 0, 1] + Self.field(5, "/i") + Self.field(6, "/o") + Self.field(7, "/e")
        #expect(try request.serializedBytes() == expected)
        #expect(try Containerd_Task_V2_CreateTaskRequest(serializedBytes: expected) == request)
    }

    @Test func stateAndWaitAndDeleteResponses() throws {
        var state = Containerd_Task_V2_StateResponse()
        state.id = "t1"
        state.pid = 42
        state.status = .running
        state.exitStatus = 3
        // id=1, bundle=2, pid=3, status=4, stdin..terminal=5-8, exit_status=9, exited_at=10, exec_id=11
        #expect(try state.serializedBytes() == Self.field(1, "t1") + [3 << 3, 42, 4 << 3, 2, 9 << 3, 3])

        var wait = Containerd_Task_V2_WaitResponse()
        wait.exitStatus = 137
        wait.exitedAt = Google_Protobuf_Timestamp(seconds: 1, nanos: 0)
        // exit_status=1, exited_at=2 {seconds=1}
        #expect(try wait.serializedBytes() == [1 << 3, 137, 1, 2 << 3 | 2, 2, 1 << 3, 1])

        var delete = Containerd_Task_V2_DeleteResponse()
        delete.pid = 7
        delete.exitStatus = 137
        #expect(try delete.serializedBytes() == [1 << 3, 7, 2 << 3, 137, 1])
    }

    @Test func statusEnumValues() {
        #expect(Containerd_V1_Types_Status.unknown.rawValue == 0)
        #expect(Containerd_V1_Types_Status.created.rawValue == 1)
        #expect(Containerd_V1_Types_Status.running.rawValue == 2)
        #expect(Containerd_V1_Types_Status.stopped.rawValue == 3)
        #expect(Containerd_V1_Types_Status.paused.rawValue == 4)
        #expect(Containerd_V1_Types_Status.pausing.rawValue == 5)
    }

    /// containerd 1.6 decodes events whose Any type URL is the bare message name.
    @Test func eventsTravelInAnEnvelopeWithBareTypeNames() throws {
        var exit = Containerd_Events_TaskExit()
        exit.containerID = "c"
        exit.id = "c"
        exit.pid = 9
        exit.exitStatus = 2
        var any = Google_Protobuf_Any()
        any.typeURL = "containerd.events.TaskExit"
        any.value = try exit.serializedData()
        var envelope = Containerd_Services_Events_Ttrpc_V1_Envelope()
        envelope.namespace = "default"
        envelope.topic = "/tasks/exit"
        envelope.event = any
        var forward = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        forward.envelope = envelope
        let decoded = try Containerd_Services_Events_Ttrpc_V1_ForwardRequest(serializedBytes: try forward.serializedBytes() as [UInt8])
        #expect(decoded.envelope.event.typeURL == "containerd.events.TaskExit")
        #expect(try Containerd_Events_TaskExit(serializedBytes: [UInt8](decoded.envelope.event.value)) == exit)
        // TaskExit: container_id=1, id=2, pid=3, exit_status=4
        #expect(try exit.serializedBytes() == Self.field(1, "c") + Self.field(2, "c") + [3 << 3, 9, 4 << 3, 2])
    }

    @Test func runtimeOptionsFromCRI() throws {
        let bytes = Self.field(1, "io.containerd.kata.v2.options") + Self.field(2, "/etc/kata/configuration.toml")
        let options = try Runtimeoptions_V1_Options(serializedBytes: bytes)
        #expect(options.typeURL == "io.containerd.kata.v2.options")
        #expect(options.configPath == "/etc/kata/configuration.toml")
    }
}

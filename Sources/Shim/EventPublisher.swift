import Foundation
import ShimProtocol
import SwiftProtobuf

/// Where the shim's task events go: containerd's ttrpc events service (Forward) in the
/// product, a list in tests. Events are published in the order they are given.
public protocol EventPublisher: Sendable {
    func publish(topic: String, event: any SwiftProtobuf.Message) async
}

/// containerd's topics for task events.
public enum TaskTopic {
    public static let create = "/tasks/create"
    public static let start = "/tasks/start"
    public static let exit = "/tasks/exit"
    public static let delete = "/tasks/delete"
    public static let execAdded = "/tasks/exec-added"
    public static let execStarted = "/tasks/exec-started"
    public static let oom = "/tasks/oom"
    public static let paused = "/tasks/paused"
    public static let resumed = "/tasks/resumed"

    /// The envelope containerd 1.6 accepts: the Any's type URL is the bare message name
    /// ("containerd.events.TaskExit"), not type.googleapis.com/...
    public static func envelope(namespace: String, topic: String, event: any SwiftProtobuf.Message,
                                at date: Date = Date()) throws -> Containerd_Services_Events_Ttrpc_V1_Envelope {
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: event).protoMessageName
        any.value = try event.serializedData()
        var envelope = Containerd_Services_Events_Ttrpc_V1_Envelope()
        envelope.timestamp = Google_Protobuf_Timestamp(date: date)
        envelope.namespace = namespace
        envelope.topic = topic
        envelope.event = any
        return envelope
    }
}

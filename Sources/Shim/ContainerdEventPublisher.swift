import AgentProtocol
import Foundation
import Runtime
import ShimProtocol
import SwiftProtobuf

/// Publishes task events to containerd: ttrpc `containerd.services.events.ttrpc.v1.Events/
/// Forward` on containerd's ttrpc socket (the TTRPC_ADDRESS it gives the shim). One event
/// at a time, in order; a broken connection (containerd restarting) is redialed once per
/// event, and an event that cannot be delivered is logged, not fatal.
public actor ContainerdEventPublisher: EventPublisher {
    let address: String
    let namespace: String
    let log: @Sendable (String) -> Void
    private var client: TTRPCClient?

    public init(address: String, namespace: String, log: @escaping @Sendable (String) -> Void) {
        self.address = address.hasPrefix("unix://") ? String(address.dropFirst("unix://".count)) : address
        self.namespace = namespace
        self.log = log
    }

    public func publish(topic: String, event: any SwiftProtobuf.Message) async {
        let request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest
        do {
            var forward = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
            forward.envelope = try TaskTopic.envelope(namespace: namespace, topic: topic, event: event)
            request = forward
        } catch {
            log("event \(topic): \(error)")
            return
        }
        for attempt in 0..<2 {
            guard let client = connectedClient() else { continue }
            let sent: Bool = await (try? blocking {
                _ = try client.call(service: "containerd.services.events.ttrpc.v1.Events", method: "Forward",
                                    request: request, responseType: Google_Protobuf_Empty.self, timeout: 10)
                return true
            }) ?? false
            if sent { return }
            self.client?.close()
            self.client = nil
            if attempt == 1 { log("event \(topic) could not be delivered to \(address)") }
        }
    }

    private func connectedClient() -> TTRPCClient? {
        if let client { return client }
        switch UnixStream.connect(address) {
        case .failure(let error):
            log("cannot reach containerd's ttrpc socket \(address): \(error)")
            return nil
        case .success(let descriptor):
            let client = TTRPCClient(descriptor: descriptor)
            self.client = client
            return client
        }
    }
}

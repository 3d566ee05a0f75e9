import AgentProtocol
import Foundation
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
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(address.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else { close(descriptor); return nil }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            close(descriptor)
            log("cannot reach containerd's ttrpc socket \(address): \(String(cString: strerror(errno)))")
            return nil
        }
        let client = TTRPCClient(descriptor: descriptor)
        self.client = client
        return client
    }
}

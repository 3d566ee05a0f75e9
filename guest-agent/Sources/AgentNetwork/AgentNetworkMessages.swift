import AgentProtocol
import Netlink

/// The network part of the host<->guest contract built from what rtnetlink reports: the
/// host runtime describes a pod's namespace with these messages, and the agent answers
/// with the same shapes for the guest's. One conversion for both sides.
extension AgentIPAddress {
    public init(_ address: InterfaceAddress) {
        self.init()
        self.address = NetworkText.address(address.address)
        prefixLength = UInt32(address.prefixLength)
    }
}

extension AgentInterface {
    /// `previousMAC`: the MAC the guest's NIC has now, when it is to get `mac` (a VM
    /// restored from a template).
    public init(name: String, mac: [UInt8], mtu: UInt32, addresses: [InterfaceAddress], previousMAC: [UInt8]? = nil) {
        self.init()
        self.name = name
        self.mac = NetworkText.mac(mac)
        if let previousMAC { self.previousMac = NetworkText.mac(previousMAC) }
        self.mtu = mtu
        self.addresses = addresses.map(AgentIPAddress.init)
    }
}

extension AgentRoute {
    /// `route` on the interface named `device` ("10.88.0.0/16", "" for the default route).
    public init(_ route: Route, device: String) {
        self.init()
        destination = route.destination.isEmpty ? "" : "\(NetworkText.address(route.destination))/\(route.destinationLength)"
        gateway = route.gateway.isEmpty ? "" : NetworkText.address(route.gateway)
        source = route.source.isEmpty ? "" : NetworkText.address(route.source)
        self.device = device
        scope = UInt32(route.scope)
    }
}

extension AgentARPNeighbor {
    public init(_ neighbour: Neighbour, device: String) {
        self.init()
        address = NetworkText.address(neighbour.address)
        mac = NetworkText.mac(neighbour.mac)
        self.device = device
    }
}

import AgentNetwork
import AgentProtocol
import CLinux
import Netlink
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// A pod's network, joined to its VM the way Kata's "tcfilter" model does: for each
/// interface CNI put in the pod's network namespace (a veth with an address), a TAP in
/// the same namespace (`tap<N>_kata`, the veth's MTU) and two tc filters that pass every
/// frame from one to the other. kasa-vmm gets the TAP descriptors; the guest NIC gets the
/// veth's MAC, and the agent the veth's addresses and the namespace's routes. Nothing is
/// made persistent: a TAP vanishes with the last descriptor (kasa-vmm's), and removing
/// the veth's ingress qdisc removes its filter.
public final class PodNetwork: @unchecked Sendable {
    /// One pod interface and the TAP that carries it into the VM.
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var mac: [UInt8]
        public var mtu: UInt32
        public var addresses: [InterfaceAddress]
        public var tapName: String
    }

    public let namespacePath: String
    public let interfaces: [Interface]
    /// The namespace's IPv4 routes on the pod interfaces, by interface name.
    public let routes: [AgentRoute]
    /// The namespace's static (permanent) IPv4 neighbour entries on the pod interfaces.
    public let neighbours: [AgentARPNeighbor]
    // Guarded by `lock`: the TAP descriptors until kasa-vmm has its copies.
    private let lock = Monitor()
    private var descriptors: [Int32]
    /// The MAC of a template VM's NIC, when this pod's VM was restored from one.
    private var templateNICMAC: [UInt8]?

    static let tapSuffix = "_kata"

    private init(namespacePath: String, interfaces: [Interface], routes: [AgentRoute], neighbours: [AgentARPNeighbor],
                 descriptors: [Int32]) {
        self.namespacePath = namespacePath
        self.interfaces = interfaces
        self.routes = routes
        self.neighbours = neighbours
        self.descriptors = descriptors
    }

    /// The TAP descriptors, in `interfaces` order (to pass to kasa-vmm as `--net fd=`).
    public var tapDescriptors: [Int32] { lock.withLock { descriptors } }

    /// Joins every usable interface of the namespace at `path` to a new TAP. A namespace
    /// with no usable interface (only `lo`, or links without addresses) gives a pod with no
    /// NIC: `interfaces` is empty and `log` says so.
    public static func setUp(namespacePath path: String, log: (String) -> Void = { _ in }) throws(RuntimeError) -> PodNetwork {
        guard HostFile.exists(path) else {
            throw RuntimeError.invalidInput("the pod's network namespace \(path) does not exist")
        }
        let found: (interfaces: [Interface], routes: [AgentRoute], neighbours: [AgentARPNeighbor], descriptors: [Int32])
        do {
            found = try NetworkNamespace.run(at: path) { try joinInterfaces() }
        } catch let error as RuntimeError {
            throw error
        } catch {
            throw RuntimeError.host("pod network \(path): \(error)")
        }
        if found.interfaces.isEmpty {
            log("the pod's network namespace \(path) has no interface with an address: the VM gets no NIC")
        }
        return PodNetwork(namespacePath: path, interfaces: found.interfaces, routes: found.routes, neighbours: found.neighbours,
                          descriptors: found.descriptors)
    }

    /// In the pod's namespace: finds the interfaces, makes and joins the TAPs, reads the routes.
    private static func joinInterfaces() throws -> ([Interface], [AgentRoute], [AgentARPNeighbor], [Int32]) {
        let socket = try NetlinkSocket()
        let netlink = RouteNetlink(socket: socket)
        let tc = TrafficControl(socket: socket)
        // Link-local IPv6 addresses (fe80::/10) belong to the link itself: the guest NIC makes its own.
        let addresses = try netlink.addresses().filter { !NetworkText.isLinkLocal($0.address) }
        let addressed = try netlink.links().filter { link in
            link.name != "lo" && !link.name.hasSuffix(tapSuffix) && addresses.contains { $0.linkIndex == link.index }
        }
        // A VM's NIC is Ethernet: an addressed interface without a MAC (a layer-3 TUN, a
        // tunnel) cannot become one, and leaving it out would lose the pod's traffic on it.
        if let layer3 = addressed.first(where: { $0.mac.count != 6 }) {
            throw RuntimeError.invalidInput("the pod's interface \(layer3.name) is not an Ethernet interface (it has no MAC): the VM's NICs cannot stand in for it")
        }
        let usable = addressed
        // The VM tells its NICs apart by MAC (UpdateInterface finds each by it).
        for (position, link) in usable.enumerated() {
            if let twin = usable[(position + 1)...].first(where: { $0.mac == link.mac }) {
                throw RuntimeError.invalidInput("the pod's interfaces \(link.name) and \(twin.name) have the same MAC \(NetworkText.mac(link.mac)): the VM's NICs must differ")
            }
        }
        var interfaces: [Interface] = []
        var descriptors: [Int32] = []
        var joined: [Int32] = []
        do {
            for (number, link) in usable.enumerated() {
                let tapName = "tap\(number)\(tapSuffix)"
                var nameBuffer = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
                // Opened here, on the thread inside the pod's namespace: that is where the TAP is made.
                let descriptor = clinux_tap_open(tapName, &nameBuffer)
                guard descriptor >= 0 else {
                    throw RuntimeError.host("pod interface \(link.name): cannot create TAP \(tapName): \(HostFile.lastErrorDescription(errno))")
                }
                descriptors.append(descriptor)
                let tap = try netlink.link(named: tapName)
                try netlink.setLink(tap.index, mtu: link.mtu, up: true)
                joined.append(link.index)
                try tc.redirectAll(from: link.index, to: tap.index)
                try tc.redirectAll(from: tap.index, to: link.index)
                interfaces.append(Interface(name: link.name, mac: link.mac, mtu: link.mtu,
                                            addresses: addresses.filter { $0.linkIndex == link.index }, tapName: tapName))
            }
            let names = Dictionary(usable.map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
            // IPv6's link-local routes (fe80::/64 on every link) are the guest's own to make.
            let routes = try (netlink.routes(family: AF_INET) + netlink.routes(family: AF_INET6)).compactMap { route in
                NetworkText.isLinkLocal(route.destination) ? nil : names[route.linkIndex].map { AgentRoute(route, device: $0) }
            }
            let neighbours = try netlink.neighbours().compactMap { entry in
                entry.isPermanent && entry.mac.count == 6 ? names[entry.linkIndex].map { AgentARPNeighbor(entry, device: $0) } : nil
            }
            return (interfaces, routes, neighbours, descriptors)
        } catch {
            // Nothing half-made stays: the TAPs go with their descriptors, the filters with the qdiscs.
            for index in joined { try? tc.removeIngress(index) }
            descriptors.forEach { close($0) }
            throw error
        }
    }

    /// kasa-vmm's `--net` values for descriptors passed as `firstDescriptor`, +1, ...
    public func vmmArguments(firstDescriptor: Int32) -> [String] {
        interfaces.enumerated().flatMap { number, interface in
            ["--net", "fd=\(firstDescriptor + Int32(number)),mac=\(NetworkText.mac(interface.mac)),mtu=\(interface.mtu)"]
        }
    }

    /// Closes this process's TAP descriptors once kasa-vmm holds its own.
    public func closeDescriptors() {
        let closing = lock.withLock { () -> [Int32] in
            defer { descriptors = [] }
            return descriptors
        }
        closing.forEach { close($0) }
    }

    /// The VM was restored from a template whose NICs all have `mac`: the guest's first
    /// NICs are told to take the pod interfaces' MACs instead.
    public func restoredFromTemplate(nicMAC mac: [UInt8]) {
        lock.withLock { templateNICMAC = mac }
    }

    /// What the agent needs to set the guest up like the pod's namespace.
    public func guestRequests() -> (interfaces: [AgentInterface], routes: [AgentRoute]) {
        let previous = lock.withLock { templateNICMAC }
        let agentInterfaces = interfaces.map { interface in
            AgentInterface(name: interface.name, mac: interface.mac, mtu: interface.mtu, addresses: interface.addresses,
                           previousMAC: previous)
        }
        return (agentInterfaces, routes)
    }

    /// Sets the guest's NICs, addresses, routes and static neighbours through the agent.
    public func configureGuest(_ agent: SandboxAgent) throws {
        let (interfaces, routes) = guestRequests()
        for interface in interfaces { try agent.updateInterface(interface) }
        if !routes.isEmpty { try agent.updateRoutes(routes) }
        if !neighbours.isEmpty { try agent.addARPNeighbors(neighbours) }
    }

    /// Undoes `setUp` in the namespace at `path`: every `tap*_kata` link goes, and so do
    /// the ingress qdiscs (with their filters) of the links a TAP was joined to. Safe to run
    /// twice and after a crash (the shim's `delete`); a namespace already gone is fine.
    public static func tearDown(namespacePath path: String) {
        guard HostFile.exists(path) else { return }
        _ = try? NetworkNamespace.run(at: path) { () -> Bool in
            let socket = try NetlinkSocket()
            let netlink = RouteNetlink(socket: socket)
            let tc = TrafficControl(socket: socket)
            for link in try netlink.links() where link.name != "lo" {
                try? tc.removeIngress(link.index)
                if link.name.hasSuffix(tapSuffix) { try? netlink.deleteLink(link.index) }
            }
            return true
        }
    }

    public func tearDown() {
        closeDescriptors()
        PodNetwork.tearDown(namespacePath: namespacePath)
    }
}

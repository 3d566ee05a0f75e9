import AgentNetwork
import AgentProtocol
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// The network RPCs: the pod's interfaces, routes and neighbours, as the runtime read them
/// in the pod's namespace, set on the guest's NICs with rtnetlink. Only the guest's PID 1
/// changes its own namespace; a host-process agent works in the namespace its test named
/// (`--netns`) and refuses otherwise, so a test can never change the host's network.
struct GuestNetwork: Sendable {
    let configuration: AgentConfiguration
    let log: @Sendable (String) -> Void

    /// Runs `body` with a netlink socket in the namespace these RPCs act on.
    private func withNetlink<T>(_ body: @escaping (RouteNetlink) throws -> T) throws -> T {
        if let path = configuration.networkNamespace {
            return try translating { try NetworkNamespace.run(at: path) { try body(try RouteNetlink()) } }
        }
        guard configuration.ownsTheMachine else {
            throw AgentError(.failedPrecondition, "this agent does not own its machine's network (not the guest's PID 1, no --netns)")
        }
        return try translating { try body(try RouteNetlink()) }
    }

    private func translating<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as NetlinkError {
            if case .notFound(let what) = error { throw AgentError(.notFound, what) }
            throw AgentError(.internal, error.description)
        }
    }

    // MARK: Interfaces

    func updateInterface(_ request: AgentUpdateInterfaceRequest) throws -> AgentInterface {
        let wanted = request.interface
        guard let mac = NetworkText.parseMAC(wanted.mac) else {
            throw AgentError(.invalidArgument, "UpdateInterface: '\(wanted.mac)' is not a MAC address")
        }
        guard !wanted.name.isEmpty, wanted.name.utf8.count < 16, !wanted.name.contains("/"), !wanted.name.contains(" ") else {
            throw AgentError(.invalidArgument, "UpdateInterface: '\(wanted.name)' is not an interface name (1-15 bytes)")
        }
        guard wanted.mtu == 0 || (68...65535).contains(wanted.mtu) else {
            throw AgentError(.invalidArgument, "UpdateInterface \(wanted.name): MTU \(wanted.mtu) is not within 68...65535")
        }
        var addresses: [(bytes: [UInt8], prefix: UInt8)] = []
        for address in wanted.addresses {
            guard let bytes = NetworkText.parse(address.address), address.prefixLength <= UInt32(bytes.count * 8) else {
                throw AgentError(.invalidArgument, "UpdateInterface \(wanted.name): '\(address.address)/\(address.prefixLength)' is not an address")
            }
            addresses.append((bytes, UInt8(address.prefixLength)))
        }
        var previous: [UInt8]?
        if !wanted.previousMac.isEmpty {
            guard let parsed = NetworkText.parseMAC(wanted.previousMac) else {
                throw AgentError(.invalidArgument, "UpdateInterface: previous MAC '\(wanted.previousMac)' is not a MAC address")
            }
            previous = parsed
        }
        let log = self.log
        return try withNetlink { netlink in
            let links = try netlink.links()
            let byMAC = links.first(where: { $0.mac == mac })
            guard var link = byMAC ?? previous.flatMap({ previous in links.first(where: { $0.mac == previous }) }) else {
                let seen = links.filter { $0.mac.count == 6 && $0.name != "lo" }.map { "\($0.name) \(NetworkText.mac($0.mac))" }
                let looked = wanted.previousMac.isEmpty ? wanted.mac : "\(wanted.mac) or \(wanted.previousMac)"
                throw AgentError(.notFound, "UpdateInterface: no guest NIC has MAC \(looked) (the guest has: \(seen.isEmpty ? "none" : seen.joined(separator: ", ")))")
            }
            if byMAC == nil {
                // A clone's NIC: it takes the pod's MAC (down while it changes).
                try netlink.setLink(link.index, up: false)
                try netlink.setLinkAddress(link.index, to: mac)
                link.mac = mac
            }
            if link.name != wanted.name {
                if links.contains(where: { $0.name == wanted.name }) {
                    throw AgentError(.alreadyExists, "UpdateInterface: the guest already has another interface named \(wanted.name)")
                }
                try netlink.setLink(link.index, up: false)
                try netlink.renameLink(link.index, to: wanted.name)
                link.name = wanted.name
            }
            try netlink.setLink(link.index, mtu: wanted.mtu == 0 ? nil : wanted.mtu, up: true)
            for address in addresses {
                do {
                    try netlink.addAddress(InterfaceAddress(linkIndex: link.index, family: address.bytes.count == 16 ? AF_INET6 : AF_INET,
                                                            address: address.bytes, prefixLength: address.prefix))
                } catch let error as NetlinkError where address.bytes.count == 16 && GuestNetwork.meansNoIPv6(error) {
                    // The guest kernel is built without IPv6 (images/kernel/config-fragment).
                    log("UpdateInterface \(wanted.name): IPv6 address \(NetworkText.address(address.bytes)) dropped: the guest has no IPv6")
                }
            }
            return try GuestNetwork.describe(link.index, netlink: netlink)
        }
    }

    /// A kernel without IPv6 refuses an IPv6 address or route with EOPNOTSUPP or EAFNOSUPPORT.
    static func meansNoIPv6(_ error: NetlinkError) -> Bool {
        error.code == EAFNOSUPPORT || error.code == EOPNOTSUPP
    }

    func listInterfaces() throws -> AgentInterfaces {
        try withNetlink { netlink in
            var response = AgentInterfaces()
            response.interfaces = try netlink.links().filter { $0.name != "lo" }.map { try GuestNetwork.describe($0.index, netlink: netlink) }
            return response
        }
    }

    static func describe(_ index: Int32, netlink: RouteNetlink) throws -> AgentInterface {
        guard let link = try netlink.links().first(where: { $0.index == index }) else {
            throw AgentError(.notFound, "interface \(index) is gone")
        }
        return AgentInterface(name: link.name, mac: link.mac, mtu: link.mtu,
                              addresses: try netlink.addresses().filter { $0.linkIndex == index })
    }

    // MARK: Routes

    func updateRoutes(_ request: AgentUpdateRoutesRequest) throws -> AgentRoutes {
        let log = self.log
        return try withNetlink { netlink in
            let links = try netlink.links()
            var wanted: [Route] = []
            for route in request.routes {
                guard let link = links.first(where: { $0.name == route.device }) else {
                    throw AgentError(.invalidArgument, "UpdateRoutes: no guest interface named '\(route.device)' for route \(route.destination.isEmpty ? "default" : route.destination)")
                }
                wanted.append(try GuestNetwork.route(route, linkIndex: link.index))
            }
            // The routes now on those interfaces that the pod does not have go (the kernel
            // adds one per address: the pod's own list says which to keep), except IPv6's
            // link-local route, which is the link's own (neighbour discovery needs it).
            let devices = Set(wanted.map(\.linkIndex))
            let same = { (one: Route, other: Route) in
                one.linkIndex == other.linkIndex && one.destination == other.destination
                    && one.destinationLength == other.destinationLength && one.gateway == other.gateway
            }
            var present: [Route] = []
            for family in [AF_INET, AF_INET6] {
                for existing in try netlink.routes(family: family) where devices.contains(existing.linkIndex)
                    && !NetworkText.isLinkLocal(existing.destination) {
                    if wanted.contains(where: { same($0, existing) }) {
                        present.append(existing)
                    } else {
                        try? netlink.deleteRoute(existing)
                    }
                }
            }
            // Routes on the link first: a gateway must be reachable before a route uses it.
            // One already there stays as it is (the kernel's IPv6 prefix route has its own
            // metric: adding the pod's would make a second route, not replace the first).
            for route in wanted.sorted(by: { $0.gateway.isEmpty && !$1.gateway.isEmpty }) where !present.contains(where: { same($0, route) }) {
                do {
                    try netlink.addRoute(route)
                } catch let error as NetlinkError where route.family == AF_INET6 && GuestNetwork.meansNoIPv6(error) {
                    log("UpdateRoutes: IPv6 route dropped: the guest has no IPv6")
                }
            }
            return try GuestNetwork.listRoutes(netlink)
        }
    }

    func listRoutes() throws -> AgentRoutes {
        try withNetlink { try GuestNetwork.listRoutes($0) }
    }

    static func listRoutes(_ netlink: RouteNetlink) throws -> AgentRoutes {
        let names = Dictionary(try netlink.links().map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
        var response = AgentRoutes()
        response.routes = try (netlink.routes(family: AF_INET) + netlink.routes(family: AF_INET6)).map {
            AgentRoute($0, device: names[$0.linkIndex] ?? "")
        }
        return response
    }

    static func route(_ route: AgentRoute, linkIndex: Int32) throws -> Route {
        var result = Route(linkIndex: linkIndex, scope: UInt8(clamping: route.scope))
        if !route.destination.isEmpty {
            let parts = route.destination.split(separator: "/")
            guard parts.count == 2, let bytes = NetworkText.parse(String(parts[0])), let length = UInt8(parts[1]),
                  Int(length) <= bytes.count * 8 else {
                throw AgentError(.invalidArgument, "UpdateRoutes: '\(route.destination)' is not a destination (10.88.0.0/16)")
            }
            result.destination = bytes
            result.destinationLength = length
            result.family = bytes.count == 16 ? AF_INET6 : AF_INET
        }
        if !route.gateway.isEmpty {
            guard let bytes = NetworkText.parse(route.gateway) else {
                throw AgentError(.invalidArgument, "UpdateRoutes: '\(route.gateway)' is not a gateway address")
            }
            result.gateway = bytes
            result.family = bytes.count == 16 ? AF_INET6 : AF_INET
        }
        if !route.source.isEmpty, let bytes = NetworkText.parse(route.source) { result.source = bytes }
        // An IPv4 route without a gateway is on the link; scope is IPv4's notion, IPv6
        // routes carry the universe's.
        if result.family == AF_INET6 { result.scope = 0 } else if result.gateway.isEmpty && route.scope == 0 { result.scope = 253 }
        return result
    }

    // MARK: Neighbours

    func addNeighbours(_ request: AgentAddARPNeighborsRequest) throws {
        try withNetlink { netlink in
            let links = try netlink.links()
            for neighbour in request.neighbors {
                guard let address = NetworkText.parse(neighbour.address), let mac = NetworkText.parseMAC(neighbour.mac) else {
                    throw AgentError(.invalidArgument, "AddARPNeighbors: '\(neighbour.address)' at '\(neighbour.mac)' is not an address and a MAC")
                }
                guard let link = links.first(where: { $0.name == neighbour.device }) else {
                    throw AgentError(.invalidArgument, "AddARPNeighbors: no guest interface named '\(neighbour.device)'")
                }
                try netlink.addNeighbour(linkIndex: link.index, address: address, mac: mac)
            }
        }
    }
}

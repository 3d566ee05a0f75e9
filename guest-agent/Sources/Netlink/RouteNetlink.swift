#if canImport(Glibc)
import Glibc
#endif

/// A network interface as rtnetlink lists it.
public struct NetworkLink: Equatable, Sendable {
    public var index: Int32
    public var name: String
    public var mac: [UInt8]
    public var mtu: UInt32
    public var isUp: Bool
}

/// An IPv4 or IPv6 address on an interface, with its prefix length.
public struct InterfaceAddress: Equatable, Sendable {
    public var linkIndex: Int32
    public var family: Int32
    /// 4 or 16 bytes, network order.
    public var address: [UInt8]
    public var prefixLength: UInt8

    public init(linkIndex: Int32, family: Int32, address: [UInt8], prefixLength: UInt8) {
        self.linkIndex = linkIndex
        self.family = family
        self.address = address
        self.prefixLength = prefixLength
    }
}

/// A route of the main table.
public struct Route: Equatable, Sendable {
    public var family: Int32
    /// Empty for the default route.
    public var destination: [UInt8]
    public var destinationLength: UInt8
    /// Empty for a route on the link itself.
    public var gateway: [UInt8]
    public var source: [UInt8]
    public var linkIndex: Int32
    /// RT_SCOPE_UNIVERSE 0, RT_SCOPE_LINK 253, RT_SCOPE_HOST 254.
    public var scope: UInt8
    /// RTPROT_KERNEL 2 for the routes the kernel adds with an address.
    public var protocolNumber: UInt8

    public init(family: Int32 = AF_INET, destination: [UInt8] = [], destinationLength: UInt8 = 0, gateway: [UInt8] = [],
                source: [UInt8] = [], linkIndex: Int32, scope: UInt8 = 0, protocolNumber: UInt8 = 4) {
        self.family = family
        self.destination = destination
        self.destinationLength = destinationLength
        self.gateway = gateway
        self.source = source
        self.linkIndex = linkIndex
        self.scope = scope
        self.protocolNumber = protocolNumber
    }
}

/// Links, addresses, routes and neighbours over one netlink socket (the namespace it was
/// made in): what the runtime reads in a pod's namespace and the agent sets in the guest.
public struct RouteNetlink: Sendable {
    public let socket: NetlinkSocket

    public init(socket: NetlinkSocket) { self.socket = socket }

    public init() throws(NetlinkError) { socket = try NetlinkSocket() }

    static let mainTable: UInt8 = 254

    // MARK: Links

    public func links() throws(NetlinkError) -> [NetworkLink] {
        try socket.dump(Netlink.getLink, header: RouteNetlink.linkHeader(index: 0)).compactMap { message in
            guard message.type == Netlink.newLink, message.payload.count >= 16 else { return nil }
            let attributes = NetlinkAttribute.decode(message.payload[16...])
            let flags = message.payload.littleEndian(UInt32.self, at: 8)
            return NetworkLink(index: Int32(bitPattern: message.payload.littleEndian(UInt32.self, at: 4)),
                               name: attributes.first { $0.type == Netlink.linkName }?.string ?? "",
                               mac: attributes.first { $0.type == Netlink.linkAddress }?.payload ?? [],
                               mtu: attributes.first { $0.type == Netlink.linkMTU }?.u32 ?? 0,
                               isUp: flags & Netlink.interfaceUp != 0)
        }
    }

    public func link(named name: String) throws(NetlinkError) -> NetworkLink {
        guard let link = try links().first(where: { $0.name == name }) else { throw .notFound("no interface named \(name)") }
        return link
    }

    /// Sets the MTU (when given) and brings the link up or down.
    public func setLink(_ index: Int32, mtu: UInt32? = nil, up: Bool) throws(NetlinkError) {
        var payload = RouteNetlink.linkHeader(index: index, flags: up ? Netlink.interfaceUp : 0, change: Netlink.interfaceUp)
        if let mtu { payload += NetlinkAttribute.encode([NetlinkAttribute(Netlink.linkMTU, u32: mtu)]) }
        try socket.request(NetlinkMessage(type: Netlink.newLink, flags: 0, payload: payload), "set link \(index)")
    }

    /// Renames a link (it must be down).
    public func renameLink(_ index: Int32, to name: String) throws(NetlinkError) {
        let payload = RouteNetlink.linkHeader(index: index) + NetlinkAttribute.encode([NetlinkAttribute(Netlink.linkName, string: name)])
        try socket.request(NetlinkMessage(type: Netlink.newLink, flags: 0, payload: payload), "rename link \(index) to \(name)")
    }

    /// Sets a link's hardware address (a NIC's MAC; the link should be down).
    public func setLinkAddress(_ index: Int32, to address: [UInt8]) throws(NetlinkError) {
        let payload = RouteNetlink.linkHeader(index: index) + NetlinkAttribute.encode([NetlinkAttribute(Netlink.linkAddress, address)])
        try socket.request(NetlinkMessage(type: Netlink.newLink, flags: 0, payload: payload), "set the address of link \(index)")
    }

    public func deleteLink(_ index: Int32) throws(NetlinkError) {
        try socket.request(NetlinkMessage(type: Netlink.deleteLink, flags: 0, payload: RouteNetlink.linkHeader(index: index)),
                           "delete link \(index)")
    }

    /// ifinfomsg: family, pad, type, index, flags, change.
    static func linkHeader(index: Int32, flags: UInt32 = 0, change: UInt32 = 0) -> [UInt8] {
        var header: [UInt8] = [UInt8(AF_UNSPEC), 0, 0, 0]
        header.appendLittleEndian(UInt32(bitPattern: index))
        header.appendLittleEndian(flags)
        header.appendLittleEndian(change)
        return header
    }

    // MARK: Addresses

    public func addresses(family: Int32 = AF_UNSPEC) throws(NetlinkError) -> [InterfaceAddress] {
        try socket.dump(Netlink.getAddress, header: [UInt8(family), 0, 0, 0, 0, 0, 0, 0]).compactMap { message in
            guard message.type == Netlink.newAddress, message.payload.count >= 8 else { return nil }
            let attributes = NetlinkAttribute.decode(message.payload[8...])
            // IFA_LOCAL is the interface's own address (IFA_ADDRESS the peer's on point-to-point links).
            guard let address = attributes.first(where: { $0.type == Netlink.addressLocal })?.payload
                    ?? attributes.first(where: { $0.type == Netlink.addressAddress })?.payload else { return nil }
            return InterfaceAddress(linkIndex: Int32(bitPattern: message.payload.littleEndian(UInt32.self, at: 4)),
                                    family: Int32(message.payload[0]), address: address, prefixLength: message.payload[1])
        }
    }

    /// IFA_F_NODAD: the address is usable at once, without duplicate address detection.
    static let addressNoDAD: UInt8 = 0x02

    /// Adds (or replaces) an address on its link. An IPv6 address skips duplicate address
    /// detection: a pod's address is the IPAM's to make unique, and while DAD ran (a
    /// second or more) the address would be tentative and nothing could bind it.
    public func addAddress(_ address: InterfaceAddress) throws(NetlinkError) {
        let flags = address.family == AF_INET6 ? RouteNetlink.addressNoDAD : 0
        var payload: [UInt8] = [UInt8(address.family), address.prefixLength, flags, 0]
        payload.appendLittleEndian(UInt32(bitPattern: address.linkIndex))
        payload += NetlinkAttribute.encode([NetlinkAttribute(Netlink.addressLocal, address.address),
                                            NetlinkAttribute(Netlink.addressAddress, address.address)])
        try socket.request(NetlinkMessage(type: Netlink.newAddress, flags: Netlink.flagCreate | Netlink.flagReplace, payload: payload),
                           "add address \(NetworkText.address(address.address))/\(address.prefixLength)")
    }

    // MARK: Routes

    /// The main table's unicast routes.
    public func routes(family: Int32 = AF_INET) throws(NetlinkError) -> [Route] {
        let header: [UInt8] = [UInt8(family), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        return try socket.dump(Netlink.getRoute, header: header).compactMap { message in
            guard message.type == Netlink.newRoute, message.payload.count >= 12 else { return nil }
            let payload = message.payload
            let attributes = NetlinkAttribute.decode(payload[12...])
            let table = attributes.first { $0.type == Netlink.routeTable }?.u32 ?? UInt32(payload[4])
            // type RTN_UNICAST (1) in the main table: not local, broadcast or multicast entries.
            guard table == UInt32(RouteNetlink.mainTable), payload[7] == 1 else { return nil }
            return Route(family: Int32(payload[0]),
                         destination: attributes.first { $0.type == Netlink.routeDestination }?.payload ?? [],
                         destinationLength: payload[1],
                         gateway: attributes.first { $0.type == Netlink.routeGateway }?.payload ?? [],
                         source: attributes.first { $0.type == Netlink.routePreferredSource }?.payload ?? [],
                         linkIndex: Int32(bitPattern: attributes.first { $0.type == Netlink.routeOutput }?.u32 ?? 0),
                         scope: payload[6], protocolNumber: payload[5])
        }
    }

    public func addRoute(_ route: Route) throws(NetlinkError) {
        try socket.request(NetlinkMessage(type: Netlink.newRoute, flags: Netlink.flagCreate | Netlink.flagReplace,
                                          payload: RouteNetlink.routePayload(route)),
                           "add route \(NetworkText.route(route))")
    }

    public func deleteRoute(_ route: Route) throws(NetlinkError) {
        try socket.request(NetlinkMessage(type: Netlink.deleteRoute, flags: 0, payload: RouteNetlink.routePayload(route)),
                           "delete route \(NetworkText.route(route))")
    }

    /// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags; then attributes.
    static func routePayload(_ route: Route) -> [UInt8] {
        var payload: [UInt8] = [UInt8(route.family), route.destinationLength, 0, 0, mainTable, route.protocolNumber, route.scope, 1]
        payload.appendLittleEndian(UInt32(0))
        var attributes = [NetlinkAttribute(Netlink.routeOutput, u32: UInt32(bitPattern: route.linkIndex))]
        if !route.destination.isEmpty { attributes.append(NetlinkAttribute(Netlink.routeDestination, route.destination)) }
        if !route.gateway.isEmpty { attributes.append(NetlinkAttribute(Netlink.routeGateway, route.gateway)) }
        if !route.source.isEmpty { attributes.append(NetlinkAttribute(Netlink.routePreferredSource, route.source)) }
        return payload + NetlinkAttribute.encode(attributes)
    }

    // MARK: Neighbours

    /// The neighbour table's entries: (link, address, MAC, NUD state bits).
    public func neighbours(family: Int32 = AF_INET) throws(NetlinkError) -> [Neighbour] {
        let header: [UInt8] = [UInt8(family), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        return try socket.dump(Netlink.getNeighbour, header: header).compactMap { message in
            guard message.type == Netlink.newNeighbour, message.payload.count >= 12 else { return nil }
            let attributes = NetlinkAttribute.decode(message.payload[12...])
            guard let address = attributes.first(where: { $0.type == Netlink.neighbourDestination })?.payload else { return nil }
            return Neighbour(linkIndex: Int32(bitPattern: message.payload.littleEndian(UInt32.self, at: 4)), address: address,
                             mac: attributes.first { $0.type == Netlink.neighbourLinkAddress }?.payload ?? [],
                             state: message.payload.littleEndian(UInt16.self, at: 8))
        }
    }

    /// A permanent neighbour entry (static ARP): `address` is at `mac` on the link.
    public func addNeighbour(linkIndex: Int32, address: [UInt8], mac: [UInt8]) throws(NetlinkError) {
        // ndmsg: family, pad, pad, ifindex, state (NUD_PERMANENT 0x80), flags, type.
        var payload: [UInt8] = [UInt8(address.count == 16 ? AF_INET6 : AF_INET), 0, 0, 0]
        payload.appendLittleEndian(UInt32(bitPattern: linkIndex))
        payload.appendLittleEndian(Neighbour.permanent)
        payload += [0, 0]
        payload += NetlinkAttribute.encode([NetlinkAttribute(Netlink.neighbourDestination, address),
                                            NetlinkAttribute(Netlink.neighbourLinkAddress, mac)])
        try socket.request(NetlinkMessage(type: Netlink.newNeighbour, flags: Netlink.flagCreate | Netlink.flagReplace, payload: payload),
                           "add neighbour \(NetworkText.address(address))")
    }
}

/// A neighbour (ARP) entry. `state` holds NUD_* bits; NUD_PERMANENT (0x80) is a static one.
public struct Neighbour: Equatable, Sendable {
    public var linkIndex: Int32
    public var address: [UInt8]
    public var mac: [UInt8]
    public var state: UInt16

    public static let permanent: UInt16 = 0x80
    public var isPermanent: Bool { state & Neighbour.permanent != 0 }
}

/// Addresses as people write them, and back.
public enum NetworkText {
    /// Whether `address` (16 bytes) is an IPv6 link-local one (fe80::/10): each link makes
    /// its own, so they are neither passed on to a VM nor removed from one.
    public static func isLinkLocal(_ address: [UInt8]) -> Bool {
        address.count == 16 && address[0] == 0xFE && address[1] & 0xC0 == 0x80
    }

    /// "10.88.0.5" or an IPv6 address in its compressed form.
    public static func address(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 16 ? AF_INET6 : AF_INET
        guard bytes.count == 4 || bytes.count == 16,
              bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &buffer, 64) }) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The 4 or 16 bytes of a written address, or nil.
    public static func parse(_ text: String) -> [UInt8]? {
        var four = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &four) == 1 { return four }
        var sixteen = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &sixteen) == 1 { return sixteen }
        return nil
    }

    public static func mac(_ bytes: [UInt8]) -> String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    public static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 ? bytes : nil
    }

    static func route(_ route: Route) -> String {
        let destination = route.destination.isEmpty ? "default" : "\(address(route.destination))/\(route.destinationLength)"
        return destination + (route.gateway.isEmpty ? "" : " via \(address(route.gateway))") + " dev \(route.linkIndex)"
    }
}

import Foundation
import Testing
@testable import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// A network namespace of the test's own (`ip netns add`), removed at the end; `ip`
/// and `tc` look at what the Swift code did there.
final class TestNamespace {
    let name = "kasa-nl-\(UUID().uuidString.prefix(6))"
    var path: String { "/run/netns/" + name }

    init() throws {
        guard getuid() == 0 else { throw Failure("network namespaces need root") }
        try run("/usr/bin/ip", ["netns", "add", name])
    }

    deinit { _ = try? run("/usr/bin/ip", ["netns", "del", name]) }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// `ip -n NAME ...` / `tc -n NAME ...`: stdout, or a failure with what it printed.
    @discardableResult
    func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure("\(tool) \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    func ip(_ arguments: String) throws -> String { try run("/usr/bin/ip", ["-n", name] + arguments.split(separator: " ").map(String.init)) }
    func tc(_ arguments: String) throws -> String { try run("/usr/sbin/tc", ["-n", name] + arguments.split(separator: " ").map(String.init)) }
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct NetlinkTests {
    @Test func messagesRoundTripAndBadLengthsAreRefused() {
        var message = NetlinkMessage(type: Netlink.newLink, flags: 5,
                                     payload: RouteNetlink.linkHeader(index: 7) + NetlinkAttribute.encode([NetlinkAttribute(3, string: "eth0")]))
        message.sequence = 42
        let bytes = message.bytes
        #expect(bytes.count == 16 + 16 + 12, "header, ifinfomsg, 'eth0\\0' padded to 8 behind 4")
        #expect(Array(bytes.prefix(4)) == [44, 0, 0, 0])
        #expect(NetlinkMessage.parse(bytes) == [message])
        let attributes = NetlinkAttribute.decode(message.payload[16...])
        #expect(attributes.count == 1 && attributes[0].string == "eth0")
        var bad = bytes
        bad[0] = 200
        #expect(NetlinkMessage.parse(bad) == nil, "a length past the datagram")
        #expect(NetlinkAttribute.decode([0xFF, 0xFF, 1, 0][...]).isEmpty, "an attribute longer than its buffer")
        #expect(NetworkText.address([10, 88, 0, 5]) == "10.88.0.5")
        #expect(NetworkText.parse("10.88.0.5") == [10, 88, 0, 5] && NetworkText.parse("fd00::1")?.count == 16)
        #expect(NetworkText.parse("10.88.0") == nil && NetworkText.parseMAC("02:42:0a:58:00:05") == [2, 0x42, 10, 0x58, 0, 5])
    }

    /// The guest agent's side: an interface brought up with an MTU and an address, a
    /// default route through a gateway, a static neighbour; `ip` sees each, and the
    /// dumps read them back.
    @Test func linksAddressesRoutesAndNeighboursAsIPShowsThem() throws {
        let namespace = try TestNamespace()
        try namespace.ip("link add v0 type veth peer name v1")
        let (link, addresses, routes) = try NetworkNamespace.run(at: namespace.path) { () -> (NetworkLink, [InterfaceAddress], [Route]) in
            let netlink = try RouteNetlink()
            let link = try netlink.link(named: "v0")
            try netlink.setLink(link.index, mtu: 1400, up: true)
            try netlink.setLink(try netlink.link(named: "v1").index, up: true)
            try netlink.addAddress(InterfaceAddress(linkIndex: link.index, family: AF_INET, address: [10, 1, 0, 2], prefixLength: 24))
            try netlink.addRoute(Route(gateway: [10, 1, 0, 1], linkIndex: link.index))
            try netlink.addNeighbour(linkIndex: link.index, address: [10, 1, 0, 1], mac: [2, 0, 0, 0, 0, 1])
            let neighbours = try netlink.neighbours()
            #expect(neighbours.contains { $0.linkIndex == link.index && $0.address == [10, 1, 0, 1] && $0.mac == [2, 0, 0, 0, 0, 1] && $0.isPermanent },
                    "\(neighbours)")
            return (try netlink.link(named: "v0"), try netlink.addresses(family: AF_INET), try netlink.routes())
        }
        #expect(link.mtu == 1400 && link.isUp && link.mac.count == 6)
        #expect(try namespace.ip("link show v0").contains("mtu 1400"))
        #expect(try namespace.ip("-4 addr show dev v0").contains("inet 10.1.0.2/24"))
        #expect(try namespace.ip("route show default").contains("default via 10.1.0.1 dev v0"))
        #expect(try namespace.ip("neigh show dev v0").contains("10.1.0.1 lladdr 02:00:00:00:00:01 PERMANENT"))
        #expect(addresses.contains(InterfaceAddress(linkIndex: link.index, family: AF_INET, address: [10, 1, 0, 2], prefixLength: 24)))
        #expect(routes.contains { $0.destination.isEmpty && $0.gateway == [10, 1, 0, 1] && $0.linkIndex == link.index })
        // The kernel's own subnet route for the address: protocol kernel, link scope.
        #expect(routes.contains { $0.destination == [10, 1, 0, 0] && $0.destinationLength == 24 && $0.protocolNumber == 2 && $0.scope == 253 })
    }

    @Test func kernelErrorsNameWhatFailed() throws {
        let namespace = try TestNamespace()
        let failure = #expect(throws: NetlinkError.self) {
            try NetworkNamespace.run(at: namespace.path) { try RouteNetlink().setLink(9999, up: true) }
        }
        #expect(failure?.code == ENODEV, "\(String(describing: failure))")
        #expect(failure?.description.contains("set link 9999") == true)
        #expect(throws: NetlinkError.self) { try NetworkNamespace.run(at: "/run/netns/no-such-namespace") { 1 } }
    }

    /// The runtime's side: tc joins two interfaces both ways (u32 match-all, mirred egress
    /// redirect), as `tc` reports; removing the ingress qdiscs removes the filters.
    @Test func tcRedirectsEverythingBetweenTwoLinksAndGoesAway() throws {
        let namespace = try TestNamespace()
        try namespace.ip("link add a0 type veth peer name a1")
        try namespace.ip("link add b0 type veth peer name b1")
        try NetworkNamespace.run(at: namespace.path) {
            let socket = try NetlinkSocket()
            let links = try RouteNetlink(socket: socket)
            let a = try links.link(named: "a0").index, b = try links.link(named: "b0").index
            let tc = TrafficControl(socket: socket)
            try tc.redirectAll(from: a, to: b)
            try tc.redirectAll(from: b, to: a)
        }
        let filters = try namespace.tc("filter show dev a0 ingress")
        #expect(filters.contains("u32") && filters.contains("mirred") && filters.contains("Redirect to device b0"), "\(filters)")
        #expect(try namespace.tc("filter show dev b0 ingress").contains("Redirect to device a0"))
        #expect(try namespace.tc("qdisc show dev a0").contains("ingress"))
        try NetworkNamespace.run(at: namespace.path) {
            let socket = try NetlinkSocket()
            let links = try RouteNetlink(socket: socket)
            let tc = TrafficControl(socket: socket)
            for name in ["a0", "b0"] { try tc.removeIngress(try links.link(named: name).index) }
            // A second removal is not an error: teardown may run twice.
            try tc.removeIngress(try links.link(named: "a0").index)
        }
        #expect(!(try namespace.tc("qdisc show dev a0")).contains("ingress"))
        #expect(try namespace.tc("filter show dev a0 ingress").isEmpty)
    }
}

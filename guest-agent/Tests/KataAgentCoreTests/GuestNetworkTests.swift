import AgentProtocol
import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// The network RPCs through the real agent binary, acting on a network namespace the
/// test creates (`--netns`; a veth end stands in for the guest's virtio NIC): what the
/// runtime sends for a pod is what `ip` then shows there.
@Suite(.serialized, .timeLimit(.minutes(2))) struct GuestNetworkTests {
    final class Namespace {
        let name = "kasa-agent-net-\(UUID().uuidString.prefix(6))"
        var path: String { "/run/netns/" + name }
        init() throws { try Namespace.run(["netns", "add", name]) }
        deinit { _ = try? Namespace.run(["netns", "del", name]) }

        @discardableResult
        static func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/ip")
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw RunningAgent.Failure(description: "ip \(arguments): \(output)") }
            return output
        }

        @discardableResult
        func ip(_ text: String) throws -> String { try Namespace.run(["-n", name] + text.split(separator: " ").map(String.init)) }
    }

    static let mac = "02:42:0a:58:07:05"

    static func interface(name: String = "eth0", mac: String = mac, mtu: UInt32 = 1450, addresses: [(String, UInt32)]) -> AgentUpdateInterfaceRequest {
        var interface = AgentInterface()
        interface.name = name
        interface.mac = mac
        interface.mtu = mtu
        interface.addresses = addresses.map { address, prefix in
            var entry = AgentIPAddress()
            entry.address = address
            entry.prefixLength = prefix
            return entry
        }
        var request = AgentUpdateInterfaceRequest()
        request.interface = interface
        return request
    }

    static func route(_ destination: String, via gateway: String = "", device: String = "eth0") -> AgentRoute {
        var route = AgentRoute()
        route.destination = destination
        route.gateway = gateway
        route.device = device
        return route
    }

    @Test func aPodInterfaceRoutesAndNeighboursAreSetAsTheHostSaysSo() throws {
        let namespace = try Namespace()
        // The guest's NIC: named as the kernel names it, with the pod's veth MAC.
        try namespace.ip("link add veth-guest address \(Self.mac) type veth peer name peer0")
        let agent = try RunningAgent(arguments: ["--netns", namespace.path])

        let updated = try agent.client.call(.updateInterface, Self.interface(addresses: [("10.88.7.5", 24)]), returning: AgentInterface.self)
        #expect(updated.name == "eth0" && updated.mtu == 1450 && updated.mac == Self.mac)
        #expect(updated.addresses.map { "\($0.address)/\($0.prefixLength)" } == ["10.88.7.5/24"])
        let link = try namespace.ip("-o addr show dev eth0")
        #expect(link.contains("inet 10.88.7.5/24"), "\(link)")
        #expect(try namespace.ip("link show eth0").contains("mtu 1450"))

        var routes = AgentUpdateRoutesRequest()
        routes.routes = [Self.route("10.88.7.0/24"), Self.route("", via: "10.88.7.1")]
        let inForce = try agent.client.call(.updateRoutes, routes, returning: AgentRoutes.self)
        #expect(inForce.routes.contains { $0.destination.isEmpty && $0.gateway == "10.88.7.1" && $0.device == "eth0" }, "\(inForce)")
        #expect(try namespace.ip("route show default").contains("default via 10.88.7.1 dev eth0"))

        var neighbours = AgentAddARPNeighborsRequest()
        var gateway = AgentARPNeighbor()
        gateway.address = "10.88.7.1"
        gateway.mac = "02:42:0a:58:07:01"
        gateway.device = "eth0"
        neighbours.neighbors = [gateway]
        try agent.client.call(.addARPNeighbors, neighbours)
        #expect(try namespace.ip("neigh show dev eth0").contains("10.88.7.1 lladdr 02:42:0a:58:07:01 PERMANENT"))

        let listed = try agent.client.call(.listInterfaces, AgentListInterfacesRequest(), returning: AgentInterfaces.self)
        #expect(listed.interfaces.contains { $0.name == "eth0" && $0.mac == Self.mac })
        let listedRoutes = try agent.client.call(.listRoutes, AgentListRoutesRequest(), returning: AgentRoutes.self)
        #expect(listedRoutes.routes.contains { $0.destination == "10.88.7.0/24" && $0.device == "eth0" })
    }

    /// A VM restored from a template: its NIC has the template's MAC; the host names that
    /// as the previous MAC and the NIC takes the pod interface's.
    @Test func aClonesNICTakesThePodsMAC() throws {
        let namespace = try Namespace()
        let templateMAC = "02:4b:41:53:41:00"
        try namespace.ip("link add veth-guest address \(templateMAC) type veth peer name peer0")
        let agent = try RunningAgent(arguments: ["--netns", namespace.path])
        var request = Self.interface(addresses: [("10.88.7.5", 24)])
        request.interface.previousMac = templateMAC
        let updated = try agent.client.call(.updateInterface, request, returning: AgentInterface.self)
        #expect(updated.name == "eth0" && updated.mac == Self.mac, "\(updated)")
        let link = try namespace.ip("link show eth0")
        #expect(link.contains("link/ether \(Self.mac)") && link.contains("UP"), "\(link)")
        #expect(try namespace.ip("-o addr show dev eth0").contains("inet 10.88.7.5/24"))

        // Neither MAC present: a clear error naming both.
        var stray = Self.interface(mac: "02:00:00:00:00:98", addresses: [])
        stray.interface.previousMac = "02:00:00:00:00:99"
        let missing = #expect(throws: TTRPCCallError.self) { try agent.client.call(.updateInterface, stray, returning: AgentInterface.self) }
        #expect(missing?.code == .notFound && missing?.message.contains("02:00:00:00:00:99") == true, "\(String(describing: missing))")
    }

    /// A route list replaces what the kernel put on the interface: a subnet route the pod
    /// does not have goes.
    @Test func routesNotInThePodsListGo() throws {
        let namespace = try Namespace()
        try namespace.ip("link add veth-guest address \(Self.mac) type veth peer name peer0")
        let agent = try RunningAgent(arguments: ["--netns", namespace.path])
        _ = try agent.client.call(.updateInterface, Self.interface(addresses: [("10.88.7.5", 16)]), returning: AgentInterface.self)
        #expect(try namespace.ip("route show").contains("10.88.0.0/16"))
        var routes = AgentUpdateRoutesRequest()
        routes.routes = [Self.route("10.88.7.0/24")]
        _ = try agent.client.call(.updateRoutes, routes, returning: AgentRoutes.self)
        let table = try namespace.ip("route show")
        #expect(!table.contains("10.88.0.0/16") && table.contains("10.88.7.0/24"), "\(table)")
    }

    /// A dual-stack pod (CNI with an IPv6 range): the IPv6 address is usable at once (no
    /// duplicate address detection leaving it tentative for a second or more), the IPv6
    /// routes are set beside the IPv4 ones, none twice, and the link's own fe80::/64 route
    /// survives the replacement of the kernel's routes.
    @Test func aDualStackPodGetsItsIPv6AddressAndRoutes() throws {
        let namespace = try Namespace()
        try namespace.ip("link add veth-guest address \(Self.mac) type veth peer name peer0")
        // A carrier, as a virtio NIC has: IPv6 configures the link (fe80::) once it is up.
        try namespace.ip("link set peer0 up")
        let agent = try RunningAgent(arguments: ["--netns", namespace.path])
        let updated = try agent.client.call(.updateInterface, Self.interface(addresses: [("10.88.7.5", 24), ("fd00:88:7::5", 64)]),
                                            returning: AgentInterface.self)
        #expect(updated.addresses.contains { $0.address == "fd00:88:7::5" && $0.prefixLength == 64 }, "\(updated)")
        let addresses = try namespace.ip("-6 -o addr show dev eth0")
        let podAddress = addresses.split(separator: "\n").filter { $0.contains("inet6 fd00:88:7::5/64") }
        #expect(podAddress.count == 1, "\(addresses)")
        #expect(!podAddress.contains { $0.contains("tentative") }, "the pod's IPv6 address must be usable at once: \(addresses)")

        var routes = AgentUpdateRoutesRequest()
        routes.routes = [Self.route("10.88.7.0/24"), Self.route("", via: "10.88.7.1"),
                         Self.route("fd00:88:7::/64"), Self.route("", via: "fd00:88:7::1")]
        let inForce = try agent.client.call(.updateRoutes, routes, returning: AgentRoutes.self)
        #expect(inForce.routes.contains { $0.destination.isEmpty && $0.gateway == "fd00:88:7::1" && $0.device == "eth0" }, "\(inForce)")
        #expect(inForce.routes.contains { $0.destination.isEmpty && $0.gateway == "10.88.7.1" }, "\(inForce)")
        let table = try namespace.ip("-6 route show")
        #expect(table.contains("default via fd00:88:7::1 dev eth0"), "\(table)")
        #expect(table.components(separatedBy: "fd00:88:7::/64 dev eth0").count == 2, "the prefix route, once: \(table)")
        #expect(table.contains("fe80::/64 dev eth0"), "the link-local route stays: \(table)")

        // An IPv6 prefix past 128 bits is refused like an IPv4 one past 32.
        let badPrefix = #expect(throws: TTRPCCallError.self) {
            try agent.client.call(.updateInterface, Self.interface(addresses: [("fd00:88:7::5", 129)]), returning: AgentInterface.self)
        }
        #expect(badPrefix?.code == .invalidArgument)
    }

    @Test func badRequestsAreClearErrors() throws {
        let namespace = try Namespace()
        try namespace.ip("link add veth-guest address \(Self.mac) type veth peer name peer0")
        let agent = try RunningAgent(arguments: ["--netns", namespace.path])
        let unknown = #expect(throws: TTRPCCallError.self) {
            try agent.client.call(.updateInterface, Self.interface(mac: "02:00:00:00:00:99", addresses: []), returning: AgentInterface.self)
        }
        #expect(unknown?.code == .notFound && unknown?.message.contains("02:00:00:00:00:99") == true, "\(String(describing: unknown))")
        let badAddress = #expect(throws: TTRPCCallError.self) {
            try agent.client.call(.updateInterface, Self.interface(addresses: [("10.88.7.500", 24)]), returning: AgentInterface.self)
        }
        #expect(badAddress?.code == .invalidArgument)
        var routes = AgentUpdateRoutesRequest()
        routes.routes = [Self.route("", via: "10.88.7.1", device: "eth9")]
        let noDevice = #expect(throws: TTRPCCallError.self) { try agent.client.call(.updateRoutes, routes, returning: AgentRoutes.self) }
        #expect(noDevice?.code == .invalidArgument && noDevice?.message.contains("eth9") == true)
        #expect(try namespace.ip("link show").contains("veth-guest"), "nothing changed")

        // Without --netns a host-process agent refuses: it must never touch the host's network.
        let hostAgent = try RunningAgent()
        let refused = #expect(throws: TTRPCCallError.self) {
            try hostAgent.client.call(.listInterfaces, AgentListInterfacesRequest(), returning: AgentInterfaces.self)
        }
        #expect(refused?.code == .failedPrecondition)
    }
}

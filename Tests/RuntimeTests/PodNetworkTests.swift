import AgentProtocol
import CLinux
import Foundation
import Testing
@testable import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// Two network namespaces the test creates: a "node" with one end of a veth pair
/// (10.77.0.1/24) and a "pod" whose end is eth0 (10.77.0.2/24, default route via the
/// node), as CNI leaves a pod. PodNetwork adds the TAP and the tc filters; the test holds
/// the TAP's descriptor and plays the VM's NIC (answers ARP and ping), so a ping from
/// the node crosses veth, filter, TAP and back without any VM.
@Suite(.serialized, .timeLimit(.minutes(2))) struct PodNetworkTests {
    final class Namespaces {
        let node = "kasa-node-\(UUID().uuidString.prefix(6))"
        let pod = "kasa-pod-\(UUID().uuidString.prefix(6))"
        var podPath: String { "/run/netns/" + pod }
        static let podMAC: [UInt8] = [0x02, 0x42, 0x0a, 0x4d, 0x00, 0x02]

        init(withInterface: Bool = true) throws {
            try Namespaces.ip("netns add \(node)")
            try Namespaces.ip("netns add \(pod)")
            try Namespaces.ip("-n \(node) link set lo up")
            try Namespaces.ip("-n \(pod) link set lo up")
            guard withInterface else { return }
            try Namespaces.ip("-n \(node) link add veth-node type veth peer name eth0 netns \(pod)")
            try Namespaces.ip("-n \(node) addr add 10.77.0.1/24 dev veth-node")
            try Namespaces.ip("-n \(node) link set veth-node up")
            try Namespaces.ip("-n \(pod) link set eth0 address 02:42:0a:4d:00:02 mtu 1400")
            try Namespaces.ip("-n \(pod) addr add 10.77.0.2/24 dev eth0")
            try Namespaces.ip("-n \(pod) addr add fd00:77::2/64 dev eth0 nodad")
            // The link-local address the kernel makes when eth0 comes up, there for certain.
            try Namespaces.ip("-n \(pod) addr add fe80::42:aff:fe4d:2/64 dev eth0 nodad")
            try Namespaces.ip("-n \(pod) link set eth0 up")
            try Namespaces.ip("-n \(pod) route add default via 10.77.0.1")
            try Namespaces.ip("-n \(pod) -6 route add default via fd00:77::1")
            try Namespaces.ip("-n \(pod) neigh add 10.77.0.9 lladdr 02:42:0a:4d:00:09 dev eth0 nud permanent")
        }

        deinit {
            _ = try? Namespaces.ip("netns del \(node)")
            _ = try? Namespaces.ip("netns del \(pod)")
        }

        /// Runs a tool with every signal unblocked first (a child inherits this test
        /// process's blocked SIGALRM, and busybox ping waits forever without it).
        @discardableResult
        static func run(_ tool: String, _ arguments: [String], timeout: Double = 30) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(filePath: "/usr/bin/python3")
            process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                                 tool] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }

        @discardableResult
        static func ip(_ text: String) throws -> String {
            let result = try run("/usr/bin/ip", text.split(separator: " ").map(String.init))
            guard result.status == 0 else { throw RuntimeTestSupport.Missing(description: "ip \(text): \(result.output)") }
            return result.output
        }
    }

    /// Answers ARP for 10.77.0.2 and ICMP echo requests on the TAP, as the guest would,
    /// until `stop` (frames carry the 12-byte virtio-net header, as kasa-vmm sees them).
    final class Responder: @unchecked Sendable {
        let descriptor: Int32
        private let lock = NSLock()
        private var stopping = false
        private(set) var answered = 0
        private let thread: Thread
        private let done = DispatchSemaphore(value: 0)

        init(tap descriptor: Int32) {
            self.descriptor = descriptor
            let box = Box()
            thread = Thread { box.responder?.serve() }
            box.responder = self
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            // As kasa-vmm sets its TAPs: a 12-byte virtio-net header, no offloads.
            _ = clinux_tap_configure(descriptor, 12, 0)
            thread.start()
        }

        private final class Box: @unchecked Sendable { weak var responder: Responder? }

        func stop() {
            lock.withLock { stopping = true }
            done.wait()
        }

        var count: Int { lock.withLock { answered } }

        private func serve() {
            defer { done.signal() }
            var buffer = [UInt8](repeating: 0, count: 2048)
            while !lock.withLock({ stopping }) {
                var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 100) > 0 else { continue }
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                guard count > 12 + 14, let reply = Responder.reply(to: Array(buffer[12..<count])) else { continue }
                let frame = [UInt8](repeating: 0, count: 12) + reply
                _ = frame.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                lock.withLock { answered += 1 }
            }
        }

        static let ourIP: [UInt8] = [10, 77, 0, 2]

        /// The reply to one Ethernet frame, or nil.
        static func reply(to frame: [UInt8]) -> [UInt8]? {
            let ours = Namespaces.podMAC
            let type = UInt16(frame[12]) << 8 | UInt16(frame[13])
            let body = Array(frame[14...])
            if type == 0x0806, body.count >= 28, body[7] == 1, Array(body[24..<28]) == ourIP {
                let sender = Array(body[8..<14]), senderIP = Array(body[14..<18])
                let arp: [UInt8] = [0, 1, 8, 0, 6, 4, 0, 2] + ours + ourIP + sender + senderIP
                return sender + ours + [0x08, 0x06] + arp
            }
            if type == 0x0800, body.count >= 20 {
                let headerLength = Int(body[0] & 0x0F) * 4
                guard body[9] == 1, body.count >= headerLength + 8, body[headerLength] == 8, Array(body[16..<20]) == ourIP else { return nil }
                var ip = body
                let source = Array(body[12..<16])
                ip.replaceSubrange(12..<16, with: ourIP)
                ip.replaceSubrange(16..<20, with: source)
                ip[8] = 64
                ip[10] = 0; ip[11] = 0
                let ipSum = checksum(Array(ip[0..<headerLength]))
                ip[10] = UInt8(ipSum >> 8); ip[11] = UInt8(ipSum & 0xFF)
                ip[headerLength] = 0  // echo reply
                ip[headerLength + 2] = 0; ip[headerLength + 3] = 0
                let icmpSum = checksum(Array(ip[headerLength...]))
                ip[headerLength + 2] = UInt8(icmpSum >> 8); ip[headerLength + 3] = UInt8(icmpSum & 0xFF)
                return Array(frame[6..<12]) + ours + [0x08, 0x00] + ip
            }
            return nil
        }

        static func checksum(_ bytes: [UInt8]) -> UInt16 {
            var sum: UInt32 = 0
            var index = 0
            while index + 1 < bytes.count { sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1]); index += 2 }
            if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
            while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
            return ~UInt16(sum)
        }
    }

    @Test func aPodInterfaceIsJoinedToATapThatCarriesPingAndGoesAway() throws {
        let namespaces = try Namespaces()
        let network = try PodNetwork.setUp(namespacePath: namespaces.podPath)
        defer { network.tearDown() }
        try #require(network.interfaces.count == 1)
        let interface = network.interfaces[0]
        #expect(interface.name == "eth0" && interface.mac == Namespaces.podMAC && interface.mtu == 1400 && interface.tapName == "tap0_kata")
        let tap = try Namespaces.ip("-n \(namespaces.pod) -o link show tap0_kata")
        #expect(tap.contains("mtu 1400") && tap.contains("UP"), "\(tap)")

        // What the agent will be told: the veth's address and MAC, the namespace's routes.
        let (interfaces, routes) = network.guestRequests()
        #expect(interfaces.map(\.name) == ["eth0"])
        #expect(interfaces.first?.mac == "02:42:0a:4d:00:02")
        // The link-local IPv6 address is the link's own: not passed on (the guest makes its own).
        #expect(Set(interfaces.first?.addresses.map { "\($0.address)/\($0.prefixLength)" } ?? [])
                == ["10.77.0.2/24", "fd00:77::2/64"])
        #expect(routes.contains { $0.destination.isEmpty && $0.gateway == "10.77.0.1" && $0.device == "eth0" }, "\(routes)")
        #expect(routes.contains { $0.destination == "10.77.0.0/24" && $0.device == "eth0" }, "\(routes)")
        // IPv6 routes too (a dual-stack pod), but not the link-local fe80::/64, the guest's own.
        #expect(routes.contains { $0.destination.isEmpty && $0.gateway == "fd00:77::1" && $0.device == "eth0" }, "\(routes)")
        #expect(routes.contains { $0.destination == "fd00:77::/64" && $0.device == "eth0" }, "\(routes)")
        #expect(!routes.contains { $0.destination.hasPrefix("fe80:") }, "\(routes)")
        #expect(network.vmmArguments(firstDescriptor: 3) == ["--net", "fd=3,mac=02:42:0a:4d:00:02,mtu=1400"])
        // Static neighbours go to the guest too (AddARPNeighbors); learnt ones do not.
        #expect(network.neighbours.map { "\($0.address) \($0.mac) \($0.device)" } == ["10.77.0.9 02:42:0a:4d:00:09 eth0"])

        let responder = Responder(tap: network.tapDescriptors[0])
        let ping = try Namespaces.run("/usr/bin/ip", ["netns", "exec", namespaces.node, "busybox", "ping", "-c", "3", "-W", "5", "10.77.0.2"])
        responder.stop()
        #expect(ping.output.contains("3 packets received"), "ping through veth, tc and the TAP: \(ping.output)")
        #expect(responder.count >= 4, "ARP and three echo requests reached the TAP: \(responder.count)")
        let counted = try Namespaces.run("/usr/sbin/tc", ["-n", namespaces.pod, "-s", "filter", "show", "dev", "eth0", "ingress"]).output
        #expect(counted.contains("mirred") && counted.contains("Redirect to device tap0_kata"), "\(counted)")
        #expect(!counted.contains("Sent 0 bytes 0 pkt"), "the filter counted the frames: \(counted)")

        network.tearDown()
        let links = try Namespaces.ip("-n \(namespaces.pod) -o link")
        #expect(!links.contains("tap0_kata"), "the TAP is left: \(links)")
        #expect(!(try Namespaces.ip("-n \(namespaces.pod) link show eth0")).isEmpty)
        let qdiscs = try Namespaces.run("/usr/sbin/tc", ["-n", namespaces.pod, "qdisc", "show", "dev", "eth0"]).output
        #expect(!qdiscs.contains("ingress"), "the veth's ingress qdisc is left: \(qdiscs)")
    }

    /// After a crash nothing but the namespace knows what was made: tearDown by path finds
    /// the TAP (its descriptor still open elsewhere) and the filters, and removes them.
    @Test func teardownByPathAloneLeavesNothing() throws {
        let namespaces = try Namespaces()
        let network = try PodNetwork.setUp(namespacePath: namespaces.podPath)
        PodNetwork.tearDown(namespacePath: namespaces.podPath)
        PodNetwork.tearDown(namespacePath: namespaces.podPath)
        network.closeDescriptors()
        #expect(!(try Namespaces.ip("-n \(namespaces.pod) -o link")).contains("_kata"))
        #expect(!(try Namespaces.run("/usr/sbin/tc", ["-n", namespaces.pod, "qdisc", "show", "dev", "eth0"]).output).contains("ingress"))
    }

    /// Two pod interfaces with one MAC: the guest could not tell its NICs apart.
    @Test func aMACSharedByTwoPodInterfacesIsAClearError() throws {
        let namespaces = try Namespaces()
        try Namespaces.ip("-n \(namespaces.pod) link add eth1 address 02:42:0a:4d:00:02 type veth peer name peer1")
        try Namespaces.ip("-n \(namespaces.pod) addr add 10.78.0.2/24 dev eth1")
        try Namespaces.ip("-n \(namespaces.pod) link set eth1 up")
        let failure = #expect(throws: RuntimeError.self) { try PodNetwork.setUp(namespacePath: namespaces.podPath) }
        #expect("\(String(describing: failure))".contains("eth0 and eth1 have the same MAC 02:42:0a:4d:00:02"), "\(String(describing: failure))")
        #expect(!(try Namespaces.ip("-n \(namespaces.pod) -o link")).contains("_kata"), "nothing is made")
    }

    /// An addressed interface the VM cannot take (a layer-3 TUN: no MAC) is a clear error
    /// naming it, and nothing is left made in the namespace.
    @Test func anInterfaceTheVMCannotTakeIsAClearError() throws {
        let namespaces = try Namespaces()
        try Namespaces.ip("-n \(namespaces.pod) tuntap add dev tun9 mode tun")
        try Namespaces.ip("-n \(namespaces.pod) addr add 10.79.0.2/24 dev tun9")
        #expect(throws: RuntimeError.invalidInput("the pod's interface tun9 is not an Ethernet interface (it has no MAC): the VM's NICs cannot stand in for it")) {
            try PodNetwork.setUp(namespacePath: namespaces.podPath)
        }
        let links = try Namespaces.ip("-n \(namespaces.pod) -o link")
        #expect(!links.contains("_kata"), "a TAP was left: \(links)")
    }

    @Test func badNamespacesAreClearOrGiveNoNIC() throws {
        #expect(throws: RuntimeError.invalidInput("the pod's network namespace /run/netns/kasa-no-such-ns does not exist")) {
            try PodNetwork.setUp(namespacePath: "/run/netns/kasa-no-such-ns")
        }
        let namespaces = try Namespaces(withInterface: false)
        var logged: [String] = []
        let network = try PodNetwork.setUp(namespacePath: namespaces.podPath) { logged.append($0) }
        #expect(network.interfaces.isEmpty && network.tapDescriptors.isEmpty)
        #expect(logged.contains { $0.contains("no interface with an address") }, "\(logged)")
        #expect(network.vmmArguments(firstDescriptor: 3).isEmpty)
    }
}

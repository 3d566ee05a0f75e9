import CAgentLinux
import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// The agent as the guest's PID 1 brings `lo` up: a new network namespace (what the
/// guest kernel starts with) has it down, and 127.0.0.1 does not answer until it is up.
@Suite struct LoopbackTests {
    struct Observation: Sendable {
        var upBefore: Int32 = -1, connectsBefore = false, upAfter: Int32 = -1, connectsAfter = false
        var logged: [String] = []
    }

    /// On a thread of its own in a new network namespace (unshare affects only the calling
    /// thread's namespace; the thread ends with it): lo before and after the agent's step.
    static func observeInNewNetworkNamespace() throws -> Observation {
        final class Box: @unchecked Sendable { var observation = Observation(); var error: Int32 = 0 }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            if kasa_unshare(KASA_CLONE_NEWNET) != 0 {
                box.error = errno
            } else {
                box.observation.upBefore = kasa_interface_is_up("lo")
                box.observation.connectsBefore = loopbackConnects()
                GuestSystemSetup.bringLoopbackUp { box.observation.logged.append($0) }
                box.observation.upAfter = kasa_interface_is_up("lo")
                box.observation.connectsAfter = loopbackConnects()
            }
            done.signal()
        }
        thread.start()
        done.wait()
        if box.error != 0 { throw POSIXError(POSIXErrorCode(rawValue: box.error) ?? .EPERM) }
        return box.observation
    }

    /// Connects a TCP socket to 127.0.0.1:port; true when the connection is made.
    static func loopbackConnects() -> Bool {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener); close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(listener, raw, length) == 0 && listen(listener, 1) == 0 && getsockname(listener, raw, &length) == 0
            }
        }
        guard bound else { return false }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) == 0 }
        }
    }

    @Test func aNewNamespaceHasLoopbackDownUntilTheAgentBringsItUp() throws {
        try #require(getuid() == 0, "creating a network namespace needs root")
        let seen = try Self.observeInNewNetworkNamespace()
        #expect(seen.upBefore == 0, "lo starts down in a new namespace")
        #expect(!seen.connectsBefore, "127.0.0.1 cannot answer while lo is down")
        #expect(seen.upAfter == 1 && seen.logged.isEmpty, "lo is up: \(seen.logged)")
        #expect(seen.connectsAfter, "127.0.0.1 answers once lo is up")
    }

    @Test func aMissingInterfaceIsAnErrorNotACrash() {
        #expect(kasa_interface_up("no-such-if0") == -1 && errno == ENODEV)
        #expect(kasa_interface_up(String(repeating: "x", count: 40)) == -1 && errno == EINVAL)
    }
}

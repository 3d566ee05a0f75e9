import Foundation
import Testing
@testable import Runtime

/// ChildProcess.Placement, the clone path the runtime starts kasa-vmm by when it jails it:
/// the child must really be the init of a PID namespace of its own, alone in an empty
/// network namespace, with the same descriptors posix_spawn would have given it; a child
/// that cannot start must say which step failed. Needs root (namespaces): the suite runs as root.
@Suite struct ChildProcessPlacementTests {
    static func readLink(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    @Test func aPlacedChildIsInitOfItsOwnPIDNamespaceInAnEmptyNetworkNamespace() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-placement-\(getpid()).out").path
        defer { unlink(output) }
        // $$ is getpid() in the child; /proc/self/net follows the caller's network namespace.
        let script = "echo pid=$$; readlink /proc/self/ns/pid; readlink /proc/self/ns/net; "
            + "tail -n +3 /proc/self/net/dev | cut -d: -f1 | tr -d ' '; echo fd3=$(readlink /proc/self/fd/3)"
        let pipe = try ChildProcess.closeOnExecPipe()
        defer { close(pipe.read); close(pipe.write) }
        let child = try ChildProcess("/bin/sh", ["-c", script], stdout: .file(output), passing: [pipe.write],
                                     placement: .init(newPIDNamespace: true, newNetworkNamespace: true))
        let status = child.wait(timeout: 30)
        #expect(status == 0, "the shell's wait status: \(String(describing: status))")
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init)
        try #require(lines.count == 5, "the child's report: \(lines)")
        #expect(lines[0] == "pid=1", "the child is its namespace's init: \(lines)")
        #expect(lines[1] != Self.readLink("/proc/self/ns/pid"), "a PID namespace other than the runtime's")
        #expect(lines[2] != Self.readLink("/proc/self/ns/net"), "a network namespace other than the runtime's")
        #expect(lines[3] == "lo", "nothing but loopback in the child's network namespace: \(lines)")
        #expect(lines[4] == "fd3=" + (Self.readLink("/proc/self/fd/\(pipe.write)") ?? "?"),
                "the passed descriptor is the child's 3: \(lines)")
    }

    @Test func aDefaultPlacementLeavesTheChildInTheRuntimesNamespaces() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("kasa-placement-default-\(getpid()).out").path
        defer { unlink(output) }
        let child = try ChildProcess("/bin/sh", ["-c", "readlink /proc/self/ns/pid /proc/self/ns/net"], stdout: .file(output))
        #expect(child.wait(timeout: 30) == 0)
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines == [Self.readLink("/proc/self/ns/pid"), Self.readLink("/proc/self/ns/net")].compactMap { $0 })
    }

    @Test func aPlacedChildThatCannotStartNamesTheStep() throws {
        do {
            _ = try ChildProcess("/no/such/kasa-vmm", [], placement: .init(newPIDNamespace: true))
            Issue.record("a missing executable started")
        } catch {
            #expect("\(error)".contains("/no/such/kasa-vmm (execve)"), "\(error)")
            #expect("\(error)".contains("No such file"), "\(error)")
        }
    }
}

import Foundation
@testable import Shim
import Testing

@Suite struct ShimArgumentsTests {
    @Test func readsContainerdsStartAndDeleteCommandLines() throws {
        let start = try ShimArguments(parsing: ["-namespace", "default", "-address", "/run/containerd/containerd.sock",
                                                "-publish-binary", "/usr/bin/containerd", "-id", "t1", "-debug", "start"])
        #expect(start == ShimArguments(namespace: "default", address: "/run/containerd/containerd.sock",
                                       publishBinary: "/usr/bin/containerd", id: "t1", debug: true, action: .start))
        let delete = try ShimArguments(parsing: ["--namespace=k8s.io", "-address", "/a.sock", "-publish-binary", "/bin/c",
                                                 "-id", "t2", "-bundle", "/run/b/t2", "delete"])
        #expect(delete.action == .delete)
        #expect(delete.namespace == "k8s.io")
        #expect(delete.bundle == "/run/b/t2")
        // The daemon gets the same flags back.
        #expect(try ShimArguments(parsing: start.flags() + ["serve"]).flags() == start.flags())
    }

    @Test(arguments: [
        (["-namespace", "n", "-id", "x"], "usage"),
        (["-namespace", "n", "-id", "x", "frobnicate"], "usage"),
        (["-namespace", "n", "-bogus", "1", "-id", "x", "start"], "flag provided but not defined: -bogus"),
        (["-namespace", "n", "start"], "-id is required"),
        (["-id", "x", "start"], "-namespace is required"),
        (["-namespace", "n", "-id"], "flag needs an argument: -id"),
    ])
    func badCommandLines(arguments: [String], message: String) {
        #expect(throws: ShimError.self) { try ShimArguments(parsing: arguments) }
        do { _ = try ShimArguments(parsing: arguments) } catch { #expect(error.message.contains(message), "\(error)") }
    }

    @Test func podContainersShareTheSandboxsSocket() throws {
        let bundle = FileManager.default.temporaryDirectory.appending(path: "kasa-bundle-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        #expect(ShimSocket.group(bundle: bundle, id: "c1") == "c1", "no config.json: its own group")
        try #"{"annotations": {"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "pod1"}}"#
            .write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        #expect(ShimSocket.group(bundle: bundle, id: "c1") == "pod1")
        try #"{"annotations": {"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "pod1"}}"#
            .write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        #expect(ShimSocket.group(bundle: bundle, id: "pod1") == "pod1")
        let path = ShimSocket.path(containerdAddress: "/run/containerd/containerd.sock", namespace: "k8s.io", group: "pod1")
        #expect(path.hasPrefix("/run/containerd/s/") && path.utf8.count < 106)
        #expect(path == ShimSocket.path(containerdAddress: "/run/containerd/containerd.sock", namespace: "k8s.io", group: "pod1"))
        #expect(path != ShimSocket.path(containerdAddress: "/run/containerd/containerd.sock", namespace: "default", group: "pod1"))
    }
}

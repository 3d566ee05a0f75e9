import Foundation
import Runtime
@testable import Shim
import Testing

/// Bad bundles are refused by the shim's runtime before any VM starts, with the reason
/// containerd shows the user.
@Suite(.timeLimit(.minutes(1)))
struct KasaShimRuntimeTests {
    func create(_ bundleFiles: [String: String]) async throws -> ShimError? {
        let bundle = FileManager.default.temporaryDirectory.appending(path: "kasa-bundle-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        for (name, text) in bundleFiles { try text.write(toFile: bundle + "/" + name, atomically: true, encoding: .utf8) }
        var configuration = RuntimeConfiguration.defaults
        configuration.runtime.stateDirectory = bundle + "/state"
        let runtime = KasaShimRuntime(configuration: configuration, onPVMHost: false, log: { _ in })
        let stdio = ShimStdio(stdin: "", stdout: "", stderr: "", terminal: false)
        do {
            _ = try await runtime.create(ShimContainerSpec(id: "bad", bundle: bundle, rootfsMounts: [], stdio: stdio))
            return nil
        } catch let error as ShimError {
            return error
        }
    }

    @Test func aBundleWithoutConfigJSONIsRefused() async throws {
        let error = try await create([:])
        #expect(error?.kind == .invalidArgument)
        #expect(error?.message.contains("config.json") == true, "\(String(describing: error))")
    }

    @Test func aMalformedSpecIsRefused() async throws {
        let notJSON = try await create(["config.json": "{\"ociVersion\": "])
        #expect(notJSON?.kind == .invalidArgument)
        #expect(notJSON?.message.contains("not valid JSON") == true, "\(String(describing: notJSON))")
        let noRoot = try await create(["config.json": #"{"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"}}"#])
        #expect(noRoot?.kind == .invalidArgument)
        #expect(noRoot?.message.contains("root.path") == true, "\(String(describing: noRoot))")
    }
}

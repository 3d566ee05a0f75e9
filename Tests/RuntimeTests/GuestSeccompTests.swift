@testable import Runtime
import KasaJSON
import Testing

/// disable_guest_seccomp (Kata's key): off, the container's OCI seccomp profile reaches
/// the agent, which applies it in the VM; on, the profile is dropped from the spec the
/// agent gets, and nothing else in the spec changes.
@Suite struct GuestSeccompTests {
    static let spec = #"{"ociVersion":"1.0.2","process":{"args":["sh"]},"linux":{"namespaces":[{"type":"pid"}],"#
        + #""seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}}}"#

    static func configuration(_ text: String) throws -> RuntimeConfiguration {
        try ConfigurationLoader.parse(text, path: "/c.toml").configuration
    }

    static func workload() throws -> WorkloadSpec {
        WorkloadSpec(rootfs: "/rootfs", ociSpec: try #require(try JSONValue(parsing: spec).objectValue))
    }

    @Test func theProfileReachesTheAgentUnlessDisabled() throws {
        let applied = try Self.configuration("")
        #expect(!applied.runtime.disableGuestSeccomp, "applied unless turned off")
        let kept = try Self.workload().forGuest(applied)
        #expect(kept.ociSpec["linux"]?["seccomp"]?["defaultAction"]?.stringValue == "SCMP_ACT_ERRNO")

        let disabled = try Self.configuration("[runtime]\ndisable_guest_seccomp = true")
        let dropped = try Self.workload().forGuest(disabled)
        #expect(dropped.ociSpec["linux"]?["seccomp"] == nil, "the profile is dropped")
        #expect(dropped.ociSpec["linux"]?["namespaces"] == kept.ociSpec["linux"]?["namespaces"], "the rest of linux stays")
        #expect(dropped.ociSpec["process"] == kept.ociSpec["process"])
        let request = dropped.createContainerRequest(containerID: "c1", rootfs: .init())
        #expect(!String(decoding: request.ociSpecJson, as: UTF8.self).contains("seccomp"))
    }

    @Test func aValueThatIsNotABooleanIsAClearError() throws {
        #expect(throws: RuntimeError.self) { try Self.configuration("[runtime]\ndisable_guest_seccomp = \"yes\"") }
    }
}

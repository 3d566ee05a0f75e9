@testable import Runtime
import KasaJSON
import Testing

/// static_sandbox_resource_mgmt: the VM's size is the defaults plus what the sandbox's
/// first container (or, through CRI's annotations, the whole pod) asks for, bounded.
@Suite struct SandboxSizingTests {
    static func configuration(_ extra: String = "") throws -> RuntimeConfiguration {
        try ConfigurationLoader.parse("""
            [hypervisor.kasa]
            default_memory = 512
            default_vcpus = 1
            \(extra)
            """, path: "/c.toml").configuration
    }

    static func spec(_ json: String) throws -> JSONValue { try JSONValue(parsing: json) }

    func size(_ json: String, _ extra: String = "", hostCPUs: Int = 8, hostMemoryMiB: Int = 16384) throws -> SandboxSize {
        try SandboxSizing.size(for: Self.spec(json), configuration: Self.configuration(extra), hostCPUs: hostCPUs,
                               hostMemoryMiB: hostMemoryMiB)
    }

    @Test func aContainersLimitsAreAddedToTheDefaults() throws {
        let limited = #"{"linux":{"resources":{"memory":{"limit":268435456},"cpu":{"quota":150000,"period":100000}}}}"#
        #expect(try size(limited) == SandboxSize(memoryMiB: 768, vcpus: 3))
        // Memory rounds up to whole MiB, CPUs to whole vCPUs; no period means CFS's 100 ms.
        let odd = #"{"linux":{"resources":{"memory":{"limit":1048577},"cpu":{"quota":50000}}}}"#
        #expect(try size(odd) == SandboxSize(memoryMiB: 514, vcpus: 2))
    }

    @Test func noLimitsMeansTheDefaults() throws {
        #expect(try size("{}") == SandboxSize(memoryMiB: 512, vcpus: 1))
        #expect(try size(#"{"linux":{"resources":{"memory":{"limit":-1},"cpu":{"quota":-1,"period":100000}}}}"#)
                == SandboxSize(memoryMiB: 512, vcpus: 1), "-1 is unlimited, not a size")
    }

    @Test func thePodsAnnotatedTotalsWinOverTheContainersOwn() throws {
        let pod = #"{"annotations":{"io.kubernetes.cri.sandbox-memory":"536870912","io.kubernetes.cri.sandbox-cpu-quota":"200000","#
            + #""io.kubernetes.cri.sandbox-cpu-period":"100000"},"linux":{"resources":{"memory":{"limit":1048576}}}}"#
        #expect(try size(pod) == SandboxSize(memoryMiB: 1024, vcpus: 3))
    }

    @Test func turnedOffEverySandboxGetsTheDefaults() throws {
        let limited = #"{"linux":{"resources":{"memory":{"limit":268435456},"cpu":{"quota":400000,"period":100000}}}}"#
        #expect(try size(limited, "[runtime]\nstatic_sandbox_resource_mgmt = false") == SandboxSize(memoryMiB: 512, vcpus: 1))
    }

    @Test func askingForMoreThanAllowedIsAClearError() throws {
        let big = #"{"linux":{"resources":{"memory":{"limit":4294967296}}}}"#
        let memory = #expect(throws: RuntimeError.self) { try size(big, "default_maxmemory = 2048") }
        #expect(memory?.description.contains("4608 MiB (default_memory 512 + its memory limit 4096)") == true, "\(String(describing: memory))")
        #expect(memory?.description.contains("2048 MiB") == true)
        // Without default_maxmemory the host's RAM is the bound.
        #expect(throws: RuntimeError.self) { try size(big, hostMemoryMiB: 4096) }
        #expect(try size(big, hostMemoryMiB: 8192).memoryMiB == 4608)

        let busy = #"{"linux":{"resources":{"cpu":{"quota":800000,"period":100000}}}}"#
        let cpus = #expect(throws: RuntimeError.self) { try size(busy, "default_maxvcpus = 4") }
        #expect(cpus?.description.contains("9 vCPUs (default_vcpus 1 + its CPU quota 8)") == true, "\(String(describing: cpus))")
        #expect(throws: RuntimeError.self) { try size(busy, hostCPUs: 2) }
    }

    @Test func theBoundsAreConfigurationKeysWithRanges() throws {
        let configuration = try Self.configuration("default_maxvcpus = 4\ndefault_maxmemory = 4096")
        #expect(configuration.hypervisor.defaultMaxVCPUs == 4 && configuration.hypervisor.defaultMaxMemoryMiB == 4096)
        #expect(configuration.runtime.staticSandboxResourceManagement, "on unless turned off")
        #expect(throws: RuntimeError.self) { try Self.configuration("default_maxvcpus = 33") }
        #expect(throws: RuntimeError.self) { try Self.configuration("default_maxmemory = -1") }
    }
}

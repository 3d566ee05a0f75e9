import KasaJSON
import MachineSize
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox VM's memory and vCPUs.
public struct SandboxSize: Sendable, Equatable {
    public var memoryMiB: Int
    public var vcpus: Int

    public init(memoryMiB: Int, vcpus: Int) {
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
    }
}

/// Kata's `static_sandbox_resource_mgmt`: a VM sized once, when the sandbox is made, as
/// `default_memory` plus the memory limit and `default_vcpus` plus the CPU quota
/// (quota / period, rounded up) that the sandbox's first container brings — the pod's
/// totals when CRI passes them as annotations (containerd 1.7+), else that container's
/// own `linux.resources` (a `ctr run --memory-limit`; containerd 1.6's pause container
/// has none, so its pods get the defaults). Bounded by `default_maxmemory` and
/// `default_maxvcpus` (0: this host's RAM and CPUs): a sandbox that asks for more is
/// refused with the sums spelled out, never silently shrunk.
public enum SandboxSizing {
    public static let podMemoryAnnotation = "io.kubernetes.cri.sandbox-memory"
    public static let podCPUQuotaAnnotation = "io.kubernetes.cri.sandbox-cpu-quota"
    public static let podCPUPeriodAnnotation = "io.kubernetes.cri.sandbox-cpu-period"

    public static var hostCPUCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    public static func size(for spec: JSONValue, configuration: RuntimeConfiguration, hostCPUs: Int = hostCPUCount,
                            hostMemoryMiB: Int = Int(MachineSize.hostMemoryMiB)) throws(RuntimeError) -> SandboxSize {
        let hypervisor = configuration.hypervisor
        let base = SandboxSize(memoryMiB: hypervisor.defaultMemoryMiB, vcpus: hypervisor.defaultVCPUs)
        guard configuration.runtime.staticSandboxResourceManagement else { return base }
        let asked = requested(spec)
        let mebibyte: Int64 = 1 << 20
        let extraMiB = asked.memoryBytes > 0 ? Int((asked.memoryBytes + mebibyte - 1) / mebibyte) : 0
        let extraCPUs = asked.cpuQuota > 0 && asked.cpuPeriod > 0
            ? Int((asked.cpuQuota + asked.cpuPeriod - 1) / asked.cpuPeriod) : 0
        let size = SandboxSize(memoryMiB: base.memoryMiB + extraMiB, vcpus: base.vcpus + extraCPUs)
        let maxMemory = hypervisor.defaultMaxMemoryMiB > 0 ? hypervisor.defaultMaxMemoryMiB
            : min(hostMemoryMiB, MachineSize.sandboxMemoryMiB.upperBound)
        let maxVCPUs = hypervisor.defaultMaxVCPUs > 0 ? hypervisor.defaultMaxVCPUs
            : min(hostCPUs, MachineSize.vcpuCounts.upperBound)
        if size.memoryMiB > maxMemory {
            throw RuntimeError.invalidInput("the sandbox needs \(size.memoryMiB) MiB (default_memory \(base.memoryMiB) + its memory limit \(extraMiB)), "
                                            + "more than the \(maxMemory) MiB a sandbox may have (default_maxmemory, or this host's RAM)")
        }
        if size.vcpus > maxVCPUs {
            throw RuntimeError.invalidInput("the sandbox needs \(size.vcpus) vCPUs (default_vcpus \(base.vcpus) + its CPU quota \(extraCPUs)), "
                                            + "more than the \(maxVCPUs) a sandbox may have (default_maxvcpus, or this host's CPUs)")
        }
        return size
    }

    /// The memory limit (bytes) and CPU quota and period the spec asks for; 0 where none.
    static func requested(_ spec: JSONValue) -> (memoryBytes: Int64, cpuQuota: Int64, cpuPeriod: Int64) {
        let annotations = spec["annotations"]
        func annotation(_ key: String) -> Int64? { annotations?[key]?.stringValue.flatMap { Int64($0) } }
        let podMemory = annotation(podMemoryAnnotation), podQuota = annotation(podCPUQuotaAnnotation)
        if podMemory != nil || podQuota != nil {
            return (max(0, podMemory ?? 0), max(0, podQuota ?? 0), max(0, annotation(podCPUPeriodAnnotation) ?? 100_000))
        }
        let resources = spec["linux"]?["resources"]
        func number(_ value: JSONValue?) -> Int64 { value?.numberValue?.integer(as: Int64.self) ?? 0 }
        let memory = number(resources?["memory"]?["limit"])
        let quota = number(resources?["cpu"]?["quota"])
        let period = resources?["cpu"]?["period"] == nil ? 100_000 : number(resources?["cpu"]?["period"])
        return (max(0, memory), max(0, quota), max(0, period))
    }
}

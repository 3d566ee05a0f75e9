import CKVM

/// The KVM extensions the VMM relies on, with the names the kernel documentation uses.
public struct KVMCapability: Sendable, Hashable {
    public let rawValue: Int32
    public let name: String

    public static let irqchip = KVMCapability(rawValue: Int32(KVM_CAP_IRQCHIP), name: "KVM_CAP_IRQCHIP")
    public static let userMemory = KVMCapability(rawValue: Int32(KVM_CAP_USER_MEMORY), name: "KVM_CAP_USER_MEMORY")
    public static let setTSSAddress = KVMCapability(rawValue: Int32(KVM_CAP_SET_TSS_ADDR), name: "KVM_CAP_SET_TSS_ADDR")
    public static let pit2 = KVMCapability(rawValue: Int32(KVM_CAP_PIT2), name: "KVM_CAP_PIT2")
    public static let extendedCPUID = KVMCapability(rawValue: Int32(KVM_CAP_EXT_CPUID), name: "KVM_CAP_EXT_CPUID")
    public static let immediateExit = KVMCapability(rawValue: Int32(KVM_CAP_IMMEDIATE_EXIT), name: "KVM_CAP_IMMEDIATE_EXIT")
    public static let ioeventfd = KVMCapability(rawValue: Int32(KVM_CAP_IOEVENTFD), name: "KVM_CAP_IOEVENTFD")
    public static let irqfd = KVMCapability(rawValue: Int32(KVM_CAP_IRQFD), name: "KVM_CAP_IRQFD")
    public static let irqInjectStatus = KVMCapability(rawValue: Int32(KVM_CAP_IRQ_INJECT_STATUS), name: "KVM_CAP_IRQ_INJECT_STATUS")
    public static let vcpuEvents = KVMCapability(rawValue: Int32(KVM_CAP_VCPU_EVENTS), name: "KVM_CAP_VCPU_EVENTS")
    public static let mpState = KVMCapability(rawValue: Int32(KVM_CAP_MP_STATE), name: "KVM_CAP_MP_STATE")
    public static let maxVCPUs = KVMCapability(rawValue: Int32(KVM_CAP_MAX_VCPUS), name: "KVM_CAP_MAX_VCPUS")
    public static let recommendedVCPUs = KVMCapability(rawValue: Int32(KVM_CAP_NR_VCPUS), name: "KVM_CAP_NR_VCPUS")

    /// What a microVM cannot boot without.
    public static let required: [KVMCapability] = [
        .irqchip, .userMemory, .setTSSAddress, .pit2, .extendedCPUID, .immediateExit, .vcpuEvents, .mpState,
    ]
}

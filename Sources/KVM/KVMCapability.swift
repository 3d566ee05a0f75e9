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
    public static let xsave = KVMCapability(rawValue: Int32(KVM_CAP_XSAVE), name: "KVM_CAP_XSAVE")
    /// On the VM fd: the size of the vCPU's XSAVE area when it exceeds the 4 KiB of kvm_xsave.
    public static let xsave2 = KVMCapability(rawValue: Int32(KVM_CAP_XSAVE2), name: "KVM_CAP_XSAVE2")
    public static let xcrs = KVMCapability(rawValue: Int32(KVM_CAP_XCRS), name: "KVM_CAP_XCRS")
    public static let debugRegisters = KVMCapability(rawValue: Int32(KVM_CAP_DEBUGREGS), name: "KVM_CAP_DEBUGREGS")
    public static let adjustClock = KVMCapability(rawValue: Int32(KVM_CAP_ADJUST_CLOCK), name: "KVM_CAP_ADJUST_CLOCK")
    public static let maxVCPUs = KVMCapability(rawValue: Int32(KVM_CAP_MAX_VCPUS), name: "KVM_CAP_MAX_VCPUS")
    public static let recommendedVCPUs = KVMCapability(rawValue: Int32(KVM_CAP_NR_VCPUS), name: "KVM_CAP_NR_VCPUS")

    /// What snapshot and restore need besides `required`.
    public static let snapshot: [KVMCapability] = [.xsave, .xcrs, .debugRegisters, .adjustClock]

    /// What a microVM cannot boot without.
    public static let required: [KVMCapability] = [
        .irqchip, .userMemory, .setTSSAddress, .pit2, .extendedCPUID, .immediateExit, .vcpuEvents, .mpState,
    ]
}

/// One CPUID leaf/subleaf as KVM reports and accepts it, without KVM's types.
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// A named CPU feature bit that a user may hide from the guest.
public struct CPUFeature: Sendable, Equatable {
    public enum Register: Sendable { case eax, ebx, ecx, edx }

    public let name: String
    public let function: UInt32
    public let index: UInt32
    public let register: Register
    public let bit: UInt32

    /// Names follow Linux's /proc/cpuinfo flags, so the same words work for `clearcpuid=`.
    public static let known: [CPUFeature] = [
        CPUFeature(name: "cx16", function: 1, index: 0, register: .ecx, bit: 13),
        CPUFeature(name: "pcid", function: 1, index: 0, register: .ecx, bit: 17),
        CPUFeature(name: "x2apic", function: 1, index: 0, register: .ecx, bit: 21),
        CPUFeature(name: "movbe", function: 1, index: 0, register: .ecx, bit: 22),
        CPUFeature(name: "popcnt", function: 1, index: 0, register: .ecx, bit: 23),
        CPUFeature(name: "tsc_deadline_timer", function: 1, index: 0, register: .ecx, bit: 24),
        CPUFeature(name: "aes", function: 1, index: 0, register: .ecx, bit: 25),
        CPUFeature(name: "xsave", function: 1, index: 0, register: .ecx, bit: 26),
        CPUFeature(name: "avx", function: 1, index: 0, register: .ecx, bit: 28),
        CPUFeature(name: "rdrand", function: 1, index: 0, register: .ecx, bit: 30),
        CPUFeature(name: "bmi1", function: 7, index: 0, register: .ebx, bit: 3),
        CPUFeature(name: "avx2", function: 7, index: 0, register: .ebx, bit: 5),
        CPUFeature(name: "smep", function: 7, index: 0, register: .ebx, bit: 7),
        CPUFeature(name: "bmi2", function: 7, index: 0, register: .ebx, bit: 8),
        CPUFeature(name: "erms", function: 7, index: 0, register: .ebx, bit: 9),
        CPUFeature(name: "invpcid", function: 7, index: 0, register: .ebx, bit: 10),
        CPUFeature(name: "avx512f", function: 7, index: 0, register: .ebx, bit: 16),
        CPUFeature(name: "rdseed", function: 7, index: 0, register: .ebx, bit: 18),
        CPUFeature(name: "smap", function: 7, index: 0, register: .ebx, bit: 20),
        CPUFeature(name: "umip", function: 7, index: 0, register: .ecx, bit: 2),
        CPUFeature(name: "pku", function: 7, index: 0, register: .ecx, bit: 3),
        CPUFeature(name: "la57", function: 7, index: 0, register: .ecx, bit: 16),
        CPUFeature(name: "rdpid", function: 7, index: 0, register: .ecx, bit: 22),
        CPUFeature(name: "pdpe1gb", function: 0x8000_0001, index: 0, register: .edx, bit: 26),
        CPUFeature(name: "rdtscp", function: 0x8000_0001, index: 0, register: .edx, bit: 27),
    ]

    public static func named(_ name: String) -> CPUFeature? {
        known.first { $0.name == name.lowercased() }
    }
}

public enum CPUIDPolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownFeature(String)

    public var description: String {
        switch self {
        case .unknownFeature(let name):
            let names = CPUFeature.known.map(\.name).joined(separator: ", ")
            return "unknown CPU feature '\(name)'; known: \(names)"
        }
    }
}

/// Turns the host's supported CPUID into what one vCPU of an N-vCPU VM should see.
public struct CPUIDPolicy: Sendable {
    public let hiddenFeatures: [CPUFeature]

    public init(hiding names: [String] = []) throws {
        hiddenFeatures = try names.map { name in
            guard let feature = CPUFeature.named(name) else { throw CPUIDPolicyError.unknownFeature(name) }
            return feature
        }
    }

    static let hypervisorBit: UInt32 = 1 << 31
    static let hyperThreadingBit: UInt32 = 1 << 28
    static let kvmSignature: (UInt32, UInt32, UInt32) = (0x4B4D_564B, 0x564B_4D56, 0x0000_004D)  // "KVMKVMKVM\0\0\0"

    public func entries(for vcpu: Int, of vcpuCount: Int, supported: [CPUIDEntry]) -> [CPUIDEntry] {
        var result = supported.map { entry -> CPUIDEntry in
            var entry = entry
            switch entry.function {
            case 1:
                // APIC id in EBX[31:24], logical processor count in EBX[23:16].
                entry.ebx = (entry.ebx & 0x0000_FFFF) | (UInt32(vcpu) << 24) | (UInt32(min(vcpuCount, 255)) << 16)
                entry.ecx |= CPUIDPolicy.hypervisorBit
                if vcpuCount > 1 { entry.edx |= CPUIDPolicy.hyperThreadingBit } else { entry.edx &= ~CPUIDPolicy.hyperThreadingBit }
            case 4:
                // EAX[31:26]: cores per package - 1. Each vCPU is a core of one package.
                entry.eax = (entry.eax & 0x03FF_FFFF) | (UInt32(vcpuCount - 1) << 26)
            case 0xB:
                entry.edx = UInt32(vcpu)  // x2APIC id
                switch entry.index {
                case 0:  // SMT level: one thread per core
                    entry.eax = 0
                    entry.ebx = 1
                    entry.ecx = (1 << 8) | 0
                case 1:  // core level
                    entry.eax = UInt32(bitsNeeded(for: vcpuCount))
                    entry.ebx = UInt32(vcpuCount)
                    entry.ecx = (2 << 8) | 1
                default:
                    entry.eax = 0
                    entry.ebx = 0
                    entry.ecx = entry.index
                }
            default:
                break
            }
            return entry
        }
        if !result.contains(where: { $0.function == 0x4000_0000 }) {
            let (ebx, ecx, edx) = CPUIDPolicy.kvmSignature
            result.append(CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: ebx, ecx: ecx, edx: edx))
        }
        for feature in hiddenFeatures {
            for position in result.indices where result[position].function == feature.function && result[position].index == feature.index {
                let mask = ~(UInt32(1) << feature.bit)
                switch feature.register {
                case .eax: result[position].eax &= mask
                case .ebx: result[position].ebx &= mask
                case .ecx: result[position].ecx &= mask
                case .edx: result[position].edx &= mask
                }
            }
        }
        return result
    }

    func bitsNeeded(for count: Int) -> Int {
        var bits = 0
        while (1 << bits) < count { bits += 1 }
        return bits
    }
}

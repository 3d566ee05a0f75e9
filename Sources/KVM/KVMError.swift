#if canImport(Glibc)
import Glibc
#endif

/// A failed KVM call, carrying the operation and errno so the message says what broke.
public struct KVMError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// Builds an error from the current errno; call right after the failing syscall.
    static func last(_ operation: String) -> KVMError {
        KVMError(operation, errno: Glibc.errno)
    }
}

/// Problems with the host's KVM itself (missing device, old API, missing capability).
public enum KVMUnavailable: Error, CustomStringConvertible, Sendable, Equatable {
    case deviceMissing(path: String)
    case permissionDenied(path: String)
    case cannotOpen(path: String, errno: Int32)
    case unsupportedAPIVersion(Int32)
    case missingCapability(KVMCapability)

    public var description: String {
        switch self {
        case .deviceMissing(let path):
            return "\(path) does not exist: KVM is not available on this host (load kvm_intel, kvm_amd or kvm_pvm)"
        case .permissionDenied(let path):
            return "no permission to open \(path): run as root or add this user to the 'kvm' group"
        case .cannotOpen(let path, let errno):
            return "cannot open \(path): \(String(cString: strerror(errno)))"
        case .unsupportedAPIVersion(let version):
            return "KVM API version \(version) is not supported (need 12)"
        case .missingCapability(let capability):
            return "this host's KVM lacks \(capability.name), which kasa-vmm needs"
        }
    }
}

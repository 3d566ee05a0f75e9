/// Errors in what the user asked for, each one line that says what to change.
public enum VMMError: Error, Equatable, Sendable, CustomStringConvertible {
    case fileMissing(role: String, path: String)
    case fileUnreadable(role: String, path: String, reason: String)
    case fileEmpty(role: String, path: String)
    case memoryZero
    case memoryTooLarge(requestedMiB: UInt64, limitMiB: UInt64)
    case memoryTooSmall(requestedMiB: UInt64, minimumMiB: UInt64)
    case vcpuCountInvalid(requested: Int, limit: Int)
    case consoleFileUnwritable(path: String, reason: String)
    case invalidConfigurationFile(path: String, reason: String)
    case tooManyDevices(requested: Int, limit: Int)
    case severalRootDrives
    case deviceSetupFailed(String)
    case noFreeDriveSlot(slots: Int)
    case notADriveSlot(index: Int)
    /// Pause, resume or snapshot refused or failed (the VM keeps running unless it says so).
    case pauseFailed(String)
    /// The snapshot cannot be written, read or restored; says why.
    case snapshotFailed(String)

    public var description: String {
        switch self {
        case .fileMissing(let role, let path):
            return "\(role) '\(path)' does not exist"
        case .fileUnreadable(let role, let path, let reason):
            return "cannot read \(role) '\(path)': \(reason)"
        case .fileEmpty(let role, let path):
            return "\(role) '\(path)' is empty"
        case .memoryZero:
            return "guest memory must be at least 1 MiB"
        case .memoryTooLarge(let requested, let limit):
            return "\(requested) MiB of guest memory is more than this host has (\(limit) MiB)"
        case .memoryTooSmall(let requested, let minimum):
            return "\(requested) MiB of guest memory is too small; use at least \(minimum) MiB"
        case .vcpuCountInvalid(let requested, let limit):
            return "\(requested) vCPUs requested; this host allows 1 to \(limit)"
        case .consoleFileUnwritable(let path, let reason):
            return "cannot open console file '\(path)': \(reason)"
        case .invalidConfigurationFile(let path, let reason):
            return "invalid configuration file '\(path)': \(reason)"
        case .tooManyDevices(let requested, let limit):
            return "\(requested) virtio devices requested; at most \(limit) fit the interrupt layout"
        case .severalRootDrives:
            return "more than one drive is marked root=on"
        case .deviceSetupFailed(let reason):
            return reason
        case .noFreeDriveSlot(let slots):
            return slots == 0 ? "this VM has no drive slots (start it with --drive-slots N)"
                : "all \(slots) drive slots are in use; detach one first"
        case .pauseFailed(let reason):
            return "cannot pause the VM: \(reason)"
        case .snapshotFailed(let reason):
            return "snapshot: \(reason)"
        case .notADriveSlot(let index):
            return "drive \(index) is not a drive slot"
        }
    }
}

/// How a VM ended.
public enum VMExitReason: Sendable, Equatable, CustomStringConvertible {
    /// The guest reset the machine through the keyboard controller (Linux `reboot=k`).
    case reset
    /// A triple fault: x86 resets the machine (Linux `reboot=t`, or a crashed guest).
    case tripleFault
    /// The guest asked KVM to power off or reset (KVM_EXIT_SYSTEM_EVENT).
    case systemEvent(type: UInt32)
    /// The host stopped the VM (`MicroVM.stop`).
    case stopped
    /// The VM could not go on: KVM reported an error the VMM cannot resolve.
    case failed(String)

    public var isCleanGuestExit: Bool {
        switch self {
        case .reset, .tripleFault, .systemEvent: return true
        case .stopped, .failed: return false
        }
    }

    public var description: String {
        switch self {
        case .reset: return "guest reset"
        case .tripleFault: return "guest triple fault (reset)"
        case .systemEvent(let type): return "guest system event \(type)"
        case .stopped: return "stopped by the host"
        case .failed(let message): return message
        }
    }
}

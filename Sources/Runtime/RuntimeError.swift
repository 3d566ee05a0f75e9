/// What goes wrong for a user of `kata-runtime`, each with the message they see and the
/// exit status the command ends with.
public enum RuntimeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// configuration.toml unreadable, malformed or with a bad value.
    case configuration(String)
    /// Bad command-line input: a missing rootfs, a malformed bundle, ...
    case invalidInput(String)
    /// The host cannot run sandboxes (no /dev/kvm, missing kernel, ...).
    case host(String)
    /// The VM or agent failed: did not boot, died, stopped answering.
    case sandbox(String)
    /// The workload could not be started (command not found, not executable).
    case workload(String, exitStatus: Int32)
    /// Stopped by a signal (Ctrl-C) before the workload finished.
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case .configuration(let message), .invalidInput(let message), .host(let message), .sandbox(let message):
            message
        case .workload(let message, _):
            message
        case .interrupted(let signal):
            "interrupted by signal \(signal); the sandbox was torn down"
        }
    }

    /// Exit status of the command: 2 for bad input (as the VMM does), 126/127 when the
    /// workload cannot run (as shells and Docker do), 128+signal when interrupted.
    public var exitStatus: Int32 {
        switch self {
        case .configuration, .invalidInput: 2
        case .host, .sandbox: 1
        case .workload(_, let status): status
        case .interrupted(let signal): 128 + signal
        }
    }
}

import CSeccomp

/// What a filtered thread's disallowed system call does.
public enum SeccompMode: String, Sendable, CaseIterable {
    /// The whole process dies at once (SIGSYS): a guest that reached code the VMM never
    /// runs gets nothing further from it. The default.
    case kill
    /// Development: the call fails with ENOSYS and kasa-vmm names it on stderr.
    case log
    /// No filters (nor the capability drop): for debugging only.
    case off
}

public struct SeccompError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ what: String, _ result: Int32) {
        description = result < 0 ? "seccomp: \(what): \(String(cString: strerror(-result)))" : "seccomp: \(what)"
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A thread's filter, compiled to BPF by Debian's libseccomp (CSeccomp, the same wrapper
/// the agent uses for container profiles): allow the rules, else `mode`'s action.
struct SeccompFilter {
    let rules: [SyscallRule]
    let mode: SeccompMode

    /// Compiles the filter and installs it on the calling thread only (no TSYNC: every
    /// thread loads its own). The thread must have no_new_privs set.
    func loadOnCurrentThread() throws {
        let filter = try compile()
        defer { kasa_seccomp_release(filter) }
        let result = kasa_seccomp_load(filter)
        guard result == 0 else { throw SeccompError("loading the filter", result) }
    }

    /// Checks that libseccomp takes every rule (names it knows, conditions it can compile),
    /// without loading anything.
    func validate() throws {
        kasa_seccomp_release(try compile())
    }

    private func compile() throws -> UnsafeMutableRawPointer {
        let name = mode == .log ? "SCMP_ACT_TRAP" : "SCMP_ACT_KILL_PROCESS"
        var defaultAction: UInt32 = 0
        guard kasa_seccomp_action(name, 0, 0, &defaultAction) == 0, let filter = kasa_seccomp_new(defaultAction) else {
            throw SeccompError("cannot create a filter", 0)
        }
        var allow: UInt32 = 0
        _ = kasa_seccomp_action("SCMP_ACT_ALLOW", 0, 0, &allow)
        do {
            for rule in rules {
                let number = kasa_seccomp_syscall(rule.name)
                guard number >= 0 else { throw SeccompError("no system call \(rule.name) on this architecture", 0) }
                let cases = rule.cases.isEmpty ? [[]] : rule.cases
                for conditions in cases {
                    let raw = conditions.map {
                        kasa_seccomp_condition(index: $0.index, op: $0.comparison.rawValue, value: $0.value, value_two: $0.valueTwo)
                    }
                    let result = raw.withUnsafeBufferPointer {
                        kasa_seccomp_add_rule(filter, allow, number, $0.baseAddress, UInt32($0.count))
                    }
                    guard result == 0 else { throw SeccompError("rule for \(rule.name)", result) }
                }
            }
        } catch {
            kasa_seccomp_release(filter)
            throw error
        }
        return filter
    }
}

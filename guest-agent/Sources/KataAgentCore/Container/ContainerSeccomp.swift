import CSeccomp
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The OCI spec's linux.seccomp: a default action, the architectures it covers, filter
/// flags and per-syscall rules with optional argument conditions (runtime-spec
/// config-linux.md). CRI sends containerd's default profile this way.
public struct SeccompProfile: Codable, Sendable, Equatable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    public var architectures: [String]?
    public var flags: [String]?
    public var listenerPath: String?
    public var syscalls: [Rule]?

    public struct Rule: Codable, Sendable, Equatable {
        public var names: [String]
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?

        public init(names: [String], action: String, errnoRet: UInt32? = nil, args: [Argument]? = nil) {
            self.names = names
            self.action = action
            self.errnoRet = errnoRet
            self.args = args
        }
    }

    public struct Argument: Codable, Sendable, Equatable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String

        public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }
    }

    public init(defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
                flags: [String]? = nil, syscalls: [Rule]? = nil) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.flags = flags
        self.syscalls = syscalls
    }

    /// SCMP_CMP_* by OCI name, libseccomp's numbering.
    static let operators: [String: UInt32] = [
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
    ]
}

/// A container's seccomp filter, compiled from its profile when the container process is
/// set up (so a bad profile fails CreateContainer with a clear error) and loaded later,
/// where runc loads it: before the capabilities are dropped when the process may not set
/// no_new_privs (loading needs CAP_SYS_ADMIN then), else just before exec.
final class SeccompFilter {
    private let filter: UnsafeMutableRawPointer

    init(_ profile: SeccompProfile) throws(ContainerInitFailure) {
        if let path = profile.listenerPath, !path.isEmpty {
            throw ContainerInitFailure("seccomp: listenerPath (SCMP_ACT_NOTIFY) is not supported in the guest")
        }
        let defaultAction = try Self.action(profile.defaultAction, errno: profile.defaultErrnoRet, "defaultAction")
        guard let filter = kasa_seccomp_new(defaultAction) else {
            throw ContainerInitFailure("seccomp: libseccomp could not make a filter")
        }
        self.filter = filter
        for name in profile.architectures ?? [] {
            try check(kasa_seccomp_add_arch(filter, name), "architecture \"\(name)\"")
        }
        for flag in profile.flags ?? [] {
            try check(kasa_seccomp_set_flag(filter, flag), "flag \"\(flag)\"")
        }
        for (index, rule) in (profile.syscalls ?? []).enumerated() {
            let action = try Self.action(rule.action, errno: rule.errnoRet, "syscalls[\(index)].action")
            var conditions: [kasa_seccomp_condition] = []
            for argument in rule.args ?? [] {
                guard let op = SeccompProfile.operators[argument.op] else {
                    throw ContainerInitFailure("seccomp: syscalls[\(index)]: unknown operator \"\(argument.op)\"")
                }
                guard argument.index < 6 else {
                    throw ContainerInitFailure("seccomp: syscalls[\(index)]: argument index \(argument.index) (a syscall has 6)")
                }
                conditions.append(kasa_seccomp_condition(index: argument.index, op: op, value: argument.value,
                                                         value_two: argument.valueTwo ?? 0))
            }
            // libseccomp takes one condition per argument in a rule; conditions on the
            // same argument become separate rules, as runc makes them.
            let indices = conditions.map(\.index)
            let groups = Set(indices).count == indices.count ? [conditions] : conditions.map { [$0] }
            for name in rule.names {
                // A name this kernel's architecture does not have is skipped, as runc does.
                let number = kasa_seccomp_syscall(name)
                guard number >= 0 else { continue }
                // The default action already: libseccomp refuses such a rule, runc skips it.
                if action == defaultAction { continue }
                for group in groups {
                    let result = group.withUnsafeBufferPointer {
                        kasa_seccomp_add_rule(filter, action, number, $0.baseAddress, UInt32($0.count))
                    }
                    try check(result, "syscalls[\(index)] \(name)")
                }
            }
        }
    }

    deinit { kasa_seccomp_release(filter) }

    /// Installs the filter; from here on every system call of this process is checked.
    func load() throws(ContainerInitFailure) {
        try check(kasa_seccomp_load(filter), "load")
    }

    private func check(_ result: Int32, _ what: String) throws(ContainerInitFailure) {
        guard result == 0 else {
            let reason = result == -EINVAL ? "not valid here" : String(cString: strerror(-result))
            throw ContainerInitFailure("seccomp: \(what): \(reason)")
        }
    }

    private static func action(_ name: String, errno: UInt32?, _ field: String) throws(ContainerInitFailure) -> UInt32 {
        var action: UInt32 = 0
        guard kasa_seccomp_action(name, errno == nil ? 0 : 1, errno ?? 0, &action) == 0 else {
            throw ContainerInitFailure("seccomp: \(field): unknown or unsupported action \"\(name)\"")
        }
        return action
    }
}

/// A condition on one argument of a system call, as seccomp compares it: the whole 64-bit
/// register, so 32-bit arguments are compared under a 32-bit mask.
public struct ArgumentCondition: Sendable, Equatable {
    /// libseccomp's SCMP_CMP_* numbers.
    enum Comparison: UInt32 {
        case equal = 4
        case maskedEqual = 7
    }

    let index: UInt32
    let comparison: Comparison
    /// For `.equal`, the value; for `.maskedEqual`, the mask.
    let value: UInt64
    /// For `.maskedEqual`, what the masked argument must equal.
    let valueTwo: UInt64

    /// Argument `index` (0-5), a full 64-bit value (a pointer-sized argument such as an
    /// ioctl request), equals `value`.
    public static func equals(_ index: UInt32, _ value: UInt64) -> ArgumentCondition {
        ArgumentCondition(index: index, comparison: .equal, value: value, valueTwo: 0)
    }

    /// Argument `index`, an `int`, equals `value` (the upper half of the register is ignored).
    public static func equals32(_ index: UInt32, _ value: Int32) -> ArgumentCondition {
        ArgumentCondition(index: index, comparison: .maskedEqual, value: 0xffff_ffff, valueTwo: UInt64(UInt32(bitPattern: value)))
    }

    /// None of `bits` is set in argument `index`.
    public static func clear(_ index: UInt32, _ bits: UInt64) -> ArgumentCondition {
        ArgumentCondition(index: index, comparison: .maskedEqual, value: bits, valueTwo: 0)
    }
}

/// One allowed system call: always, or when every condition of any one of `cases` holds.
public struct SyscallRule: Sendable, Equatable {
    public let name: String
    /// Empty: allowed with any arguments.
    public let cases: [[ArgumentCondition]]

    public init(_ name: String, cases: [[ArgumentCondition]] = []) {
        self.name = name
        self.cases = cases
    }

    /// Allowed when argument `index` (a 64-bit value) is one of `values`.
    public static func when(_ name: String, argument index: UInt32, isOneOf values: [UInt64]) -> SyscallRule {
        SyscallRule(name, cases: values.map { [.equals(index, $0)] })
    }

    /// Allowed when argument `index` (an `int`) is one of `values`.
    public static func when(_ name: String, argument index: UInt32, isOneOf32 values: [Int32]) -> SyscallRule {
        SyscallRule(name, cases: values.map { [.equals32(index, $0)] })
    }
}

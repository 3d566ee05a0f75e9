/// A guest-physical address. A separate type so host pointers, offsets and guest
/// addresses cannot be mixed up silently.
public struct GuestAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public static func < (lhs: GuestAddress, rhs: GuestAddress) -> Bool { lhs.value < rhs.value }

    /// Adds an offset, or returns nil when the result would wrap past 2^64.
    public func adding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = value.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    public func alignedDown(to alignment: UInt64) -> GuestAddress {
        GuestAddress(value & ~(alignment - 1))
    }

    public var description: String { "0x" + String(value, radix: 16) }
}

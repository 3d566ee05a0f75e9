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

    /// `offset` bytes further on, for an access of `length` bytes there; a sum past 2^64
    /// is the out-of-range error such an access gets. Guest-controlled addresses are only
    /// ever moved this way (or with `adding`), never with a raw `value + n`.
    public func advanced(by offset: UInt64, forAccessOf length: UInt64 = 1) throws(GuestMemoryError) -> GuestAddress {
        guard let moved = adding(offset) else { throw .outOfRange(address: self, length: offset &+ length) }
        return moved
    }

    public func alignedDown(to alignment: UInt64) -> GuestAddress {
        GuestAddress(value & ~(alignment - 1))
    }

    public var description: String { "0x" + String(value, radix: 16) }
}

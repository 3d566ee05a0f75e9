/// The kernel command line as the guest receives it: NUL-terminated, within the limit the
/// kernel declares.
public struct KernelCommandLine: Sendable, Equatable {
    public private(set) var text: String

    public init(_ text: String = "") { self.text = text }

    public mutating func append(_ parameters: String) {
        let trimmed = parameters.trimmingSpaces
        guard !trimmed.isEmpty else { return }
        text = text.trimmingSpaces.isEmpty ? trimmed : text.trimmingSpaces + " " + trimmed
    }

    /// The bytes to place in guest memory, NUL included.
    public func encoded(limit: Int) throws -> [UInt8] {
        let bytes = Array(text.utf8)
        if bytes.contains(0) { throw BootError.commandLineHasNUL }
        // The limit counts the terminating NUL.
        guard bytes.count < limit else { throw BootError.commandLineTooLong(length: bytes.count, limit: limit - 1) }
        return bytes + [0]
    }
}

extension String {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}

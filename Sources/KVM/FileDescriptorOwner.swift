#if canImport(Glibc)
import Glibc
#endif

/// Closes a descriptor exactly once, when its owner goes away.
final class OwnedDescriptor: Sendable {
    let raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    deinit { close(raw) }
}

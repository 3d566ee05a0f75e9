import LegacyDevices

/// Routes port I/O exits to devices by port range. Built before the vCPUs start and
/// read-only afterwards, so lookups need no lock.
public final class PortIOBus: Sendable {
    struct Mapping: Sendable {
        let base: UInt16
        let count: UInt16
        let device: any PortIODevice
    }

    private let mappings: [Mapping]

    init(mappings: [Mapping]) {
        self.mappings = mappings.sorted { $0.base < $1.base }
    }

    private func find(_ port: UInt16) -> Mapping? {
        mappings.first { port >= $0.base && port - $0.base < $0.count }
    }

    /// Unclaimed ports read as all ones, as on a PC's floating ISA bus.
    public func read(port: UInt16, size: Int) -> UInt32 {
        guard let mapping = find(port) else { return size >= 4 ? 0xFFFF_FFFF : (UInt32(1) << (size * 8)) - 1 }
        return mapping.device.read(offset: port - mapping.base, size: size)
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        guard let mapping = find(port) else { return }
        mapping.device.write(offset: port - mapping.base, size: size, value: value)
    }

    /// Handles an `out`/`outs` exit: `bytes` holds `bytes.count / size` values.
    func handleOut(port: UInt16, size: Int, bytes: [UInt8]) {
        guard size > 0 else { return }
        var index = 0
        while index + size <= bytes.count {
            var value: UInt32 = 0
            for byte in 0..<min(size, 4) { value |= UInt32(bytes[index + byte]) << (8 * byte) }
            write(port: port, size: size, value: value)
            index += size
        }
    }

    /// Handles an `in`/`ins` exit, returning the bytes to hand back to KVM.
    func handleIn(port: UInt16, size: Int, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size * count)
        for _ in 0..<count {
            let value = read(port: port, size: size)
            for byte in 0..<size { bytes.append(byte < 4 ? UInt8(truncatingIfNeeded: value >> (8 * byte)) : 0) }
        }
        return bytes
    }
}

/// `VMConfiguration.testHook`'s port: reads as zero, a write calls the hook.
final class TestHookPort: PortIODevice, Sendable {
    let hook: @Sendable (UInt32) -> Void
    init(_ hook: @escaping @Sendable (UInt32) -> Void) { self.hook = hook }
    func read(offset: UInt16, size: Int) -> UInt32 { 0 }
    func write(offset: UInt16, size: Int, value: UInt32) { hook(value) }
}

/// A device on the x86 I/O port bus. `offset` is relative to the device's base port.
/// Implementations synchronize themselves: several vCPU threads may call at once.
public protocol PortIODevice: AnyObject, Sendable {
    func read(offset: UInt16, size: Int) -> UInt32
    func write(offset: UInt16, size: Int, value: UInt32)
}

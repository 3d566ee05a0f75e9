/// Just enough of the PC keyboard controller for a guest to reset the machine: Linux's
/// `reboot=k` writes 0xFE (pulse reset line) to the command port.
public final class I8042Controller: PortIODevice, Sendable {
    public static let dataPort: UInt16 = 0x60
    public static let commandPort: UInt16 = 0x64
    static let resetCommand: UInt8 = 0xFE

    private let onReset: @Sendable () -> Void

    public init(onReset: @escaping @Sendable () -> Void) {
        self.onReset = onReset
    }

    /// Offsets are relative to port 0x60; 4 is the command/status port.
    public func read(offset: UInt16, size: Int) -> UInt32 {
        // Status 0: output buffer empty, input buffer empty; no keyboard data.
        0
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        if offset == I8042Controller.commandPort - I8042Controller.dataPort && UInt8(truncatingIfNeeded: value) == I8042Controller.resetCommand {
            onReset()
        }
    }
}

/// The hybrid-vsock handshake a host client sends on the device's Unix socket:
/// `CONNECT <port>\n`, answered with `OK <hostport>\n` once the guest accepts.
enum VsockConnectLine {
    /// Longest line accepted, newline excluded.
    static let maximumLength = 64

    /// The guest port named by a line (without its newline; a trailing CR is tolerated),
    /// or nil for anything but `CONNECT` followed by a decimal 32-bit port.
    static func port(in line: some Collection<UInt8>) -> UInt32? {
        var bytes = Array(line)
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        let prefix = Array("CONNECT ".utf8)
        guard bytes.count > prefix.count, bytes.count <= maximumLength, Array(bytes.prefix(prefix.count)) == prefix else { return nil }
        let digits = bytes.dropFirst(prefix.count)
        guard digits.count <= 10, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        var value: UInt64 = 0
        for digit in digits { value = value * 10 + UInt64(digit - UInt8(ascii: "0")) }
        guard value <= UInt64(UInt32.max) else { return nil }
        return UInt32(value)
    }

    static func reply(hostPort: UInt32) -> [UInt8] { Array("OK \(hostPort)\n".utf8) }
}

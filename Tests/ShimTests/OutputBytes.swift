/// A container's output byte by byte, for a failure message: issue 15's fault 2 (each write
/// of a container's output lost its first 8 bytes, once, under load) left open whether those
/// bytes were missing or NULs, which a terminal does not show. The next failure says.
enum OutputBytes {
    static func describe(_ output: String) -> String {
        let bytes = Array(output.utf8)
        let hex = bytes.prefix(256).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
        return "stdout, \(bytes.count) bytes: " + hex.joined(separator: " ") + (bytes.count > 256 ? " ..." : "")
    }
}

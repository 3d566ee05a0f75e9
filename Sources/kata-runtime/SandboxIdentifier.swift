import CLinux
import Runtime

/// Sandbox ids name a state directory and the agent's container: a safe, short alphabet.
enum SandboxIdentifier {
    static func random() -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        _ = clinux_getrandom(&bytes, UInt(bytes.count))
        return "kasa-" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    static func validate(_ id: String) throws(RuntimeError) {
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: ".")
        }
        guard allowed, !id.isEmpty, id.utf8.count <= 64, id.first != ".", id.first != "-" else {
            throw RuntimeError.invalidInput("sandbox id \"\(id)\": use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
    }
}

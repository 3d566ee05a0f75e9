import Crypto

/// SHA-256 as the runtime uses it: the image cache's content key (DirectoryDigest),
/// names derived from ids (sandbox directories, drive serials, the shim's socket). It is
/// swift-crypto's (BoringSSL's SHA-256, with the CPU's SHA extensions where present):
/// measured on this project's machines at ~1,680 MiB/s against ~175 MiB/s for the
/// hand-written one it replaced, for ~2 MiB more per binary (docs/architecture.md).
public struct ContentHash {
    private var hasher = SHA256()

    public init() {}

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
    }

    public mutating func update(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
    }

    public mutating func update(_ text: String) { update(Array(text.utf8)) }

    /// The hex digest of `text` alone (names derived from ids).
    public static func hexDigest(of text: String) -> String {
        var hash = ContentHash()
        hash.update(text)
        return hash.hexDigest()
    }

    /// The digest of everything so far, in lowercase hex (the hash itself can go on).
    public func hexDigest() -> String {
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in hasher.finalize() {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

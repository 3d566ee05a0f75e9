#if canImport(Glibc)
import Glibc
#endif

/// `vmm_user`: the unprivileged host user a jailed kasa-vmm becomes after set-up
/// (`kasa-vmm --user UID:GID`; scripts/install-deps.sh creates the default one). Looked up
/// in the host's user database each time a VMM starts, so an operator's change applies to
/// the next sandbox.
public enum VMMUser {
    public static let defaultName = "kasa-vmm"

    /// A name useradd would take (and no more than getpwnam needs): letters, digits, `_`,
    /// `-`, `.`, not starting with `-`, at most 32 bytes.
    static func isPlausibleName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 32, bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x30 && byte <= 0x39)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }
    }

    /// The user's uid and primary gid; nil for a user that is root (uid 0): kasa-vmm then
    /// stays root. A user that does not exist, or whose group is root's, is an error that
    /// says how to make one.
    public static func resolve(_ name: String) throws(RuntimeError) -> (uid: UInt32, gid: UInt32)? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        let code = getpwnam_r(name, &entry, &buffer, buffer.count, &found)
        guard code == 0 else {
            throw RuntimeError.configuration("vmm_user \"\(name)\": cannot read the host's users: \(HostFile.lastErrorDescription(code))")
        }
        guard found != nil else {
            throw RuntimeError.configuration("vmm_user \"\(name)\": no such user on this host: create it (scripts/install-deps.sh "
                + "does: useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
                + "\(name)) or set "
                + "[hypervisor.kasa] vmm_user = \"root\"")
        }
        if entry.pw_uid == 0 { return nil }
        guard entry.pw_gid != 0 else {
            throw RuntimeError.configuration("vmm_user \"\(name)\": its primary group is root's (gid 0): give it a group of its own")
        }
        return (entry.pw_uid, entry.pw_gid)
    }
}

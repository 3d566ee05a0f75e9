import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The host system calls the server makes, each turning -1 into the errno the guest gets.
/// Every name a guest sends passes `checkedName` first and is then resolved relative to a
/// descriptor the server holds: never by a host path, never through a link.
enum HostCalls {
    /// openat2's resolve bits for a guest name: nothing above the directory, no symbolic
    /// link followed anywhere (the last component included, when O_NOFOLLOW is given), no
    /// /proc magic link.
    static let guestResolve = CLINUX_RESOLVE_BENEATH | CLINUX_RESOLVE_NO_SYMLINKS | CLINUX_RESOLVE_NO_MAGICLINKS

    /// A name the guest may use for one directory entry: 1 to 255 bytes, no '/', no NUL,
    /// not "." or "..". Anything else is EINVAL (ENAMETOOLONG for a long one): a request
    /// can never climb out of the directory it names.
    static func checkedName(_ name: [UInt8]) throws(HostErrno) -> [UInt8] {
        guard !name.isEmpty, !name.contains(UInt8(ascii: "/")), !name.contains(0),
              name != [UInt8(ascii: ".")], name != [UInt8(ascii: "."), UInt8(ascii: ".")] else { throw HostErrno(EINVAL) }
        guard name.count <= 255 else { throw HostErrno(ENAMETOOLONG) }
        return name
    }

    /// Runs `body` with `bytes` as a NUL-terminated C string.
    static func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(HostErrno) -> R) throws(HostErrno) -> R {
        let terminated = bytes + [0]
        return try terminated.withUnsafeBufferPointer { (buffer) throws(HostErrno) -> R in
            try buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { (pointer) throws(HostErrno) -> R in
                try body(pointer)
            }
        }
    }

    static func check(_ result: Int32) throws(HostErrno) {
        if result < 0 { throw HostErrno.current }
    }

    /// Opens `name` beneath `directory` with the guest-name rules.
    static func openBeneath(_ directory: Int32, _ name: [UInt8], flags: Int32, mode: UInt32 = 0) throws(HostErrno) -> Int32 {
        let descriptor = try withCString(name) { pointer throws(HostErrno) -> Int32 in
            clinux_openat2(directory, pointer, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode), guestResolve)
        }
        try check(descriptor)
        return descriptor
    }

    /// The file's status through its own descriptor (CLINUX_O_PATH included), a link not followed.
    static func status(_ descriptor: Int32) throws(HostErrno) -> stat {
        var result = stat()
        try check(fstatat(descriptor, "", &result, CLINUX_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return result
    }

    /// The file behind one of our own descriptors, named through /proc/self/fd: how an
    /// CLINUX_O_PATH node is reopened for I/O, chmod or utimes. The name is the descriptor number
    /// the server holds, never anything the guest sent.
    static func procName(_ descriptor: Int32) -> [UInt8] { Array(String(descriptor).utf8) }
}

import Foundation
import SharedFileSystem
#if canImport(Glibc)
import Glibc
#endif

/// Plain bytes as a request's payload and a reply's data (what the device does with guest
/// buffers), so the server can be driven without a VM.
final class BytesIO: FUSEPayloadIO {
    let payload: [UInt8]
    private(set) var data: [UInt8] = []

    init(payload: [UInt8]) { self.payload = payload }

    var payloadLength: Int { payload.count }

    func writePayload(count: Int, to descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int {
        let result = payload.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, count, off_t(offset)) }
        guard result >= 0 else { throw HostErrno(errno) }
        return result
    }

    func readReplyData(count: Int, from descriptor: Int32, at offset: Int64) throws(HostErrno) -> Int {
        var buffer = [UInt8](repeating: 0, count: count)
        let result = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
        guard result >= 0 else { throw HostErrno(errno) }
        data = Array(buffer[0..<result])
        return result
    }
}

/// Little-endian argument bytes, written as the Linux driver lays them out.
struct Arguments {
    var bytes: [UInt8] = []
    func u32(_ value: UInt32) -> Arguments { var copy = self; withUnsafeBytes(of: value.littleEndian) { copy.bytes += $0 }; return copy }
    func u64(_ value: UInt64) -> Arguments { var copy = self; withUnsafeBytes(of: value.littleEndian) { copy.bytes += $0 }; return copy }
    func name(_ text: String) -> Arguments { var copy = self; copy.bytes += Array(text.utf8) + [0]; return copy }
    func raw(_ extra: [UInt8]) -> Arguments { var copy = self; copy.bytes += extra; return copy }
}

/// What a reply said: the error (0 or a negated errno), its body and any READ data.
struct Answer {
    let error: Int32
    let body: [UInt8]
    let data: [UInt8]

    func u64(at offset: Int) -> UInt64 { body[offset..<(offset + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    func u32(at offset: Int) -> UInt32 { body[offset..<(offset + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    /// entry_out: the node ID; fuse_attr within it starts at 40.
    var nodeID: UInt64 { u64(at: 0) }
    var entryMode: UInt32 { u32(at: 40 + 60) }
    var entrySize: UInt64 { u64(at: 40 + 8) }
    var entryUID: UInt32 { u32(at: 40 + 68) }
    var entryNlink: UInt32 { u32(at: 40 + 64) }
    /// attr_out: fuse_attr starts at 16.
    var attrSize: UInt64 { u64(at: 16 + 8) }
    var attrMode: UInt32 { u32(at: 16 + 60) }
    var attrUID: UInt32 { u32(at: 16 + 68) }
    var attrGID: UInt32 { u32(at: 16 + 72) }
    var attrMtime: UInt64 { u64(at: 16 + 32) }
}

/// A guest's side of a session with a SharedDirectory over an exported temporary directory.
final class FUSETestClient {
    let root: String
    let server: SharedDirectory
    private var unique: UInt64 = 0

    init(options: SharedDirectoryOptions = SharedDirectoryOptions(), initialize: Bool = true) throws {
        root = try FUSETestClient.temporaryDirectory()
        server = try SharedDirectory(path: root, options: options)
        if initialize {
            let reply = call(.`init`, node: 0, Arguments().u32(7).u32(37).u32(131_072).u32(0xFFFF_FFFF).raw([UInt8](repeating: 0, count: 48)))
            precondition(reply.error == 0, "INIT failed: \(reply.error)")
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "kasa-fuse-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    func host(_ relative: String) -> String { root + "/" + relative }

    /// Sends one request; `nil` from the server (no reply due) is error 1 here.
    @discardableResult
    func call(_ opcode: FUSEOpcode, node: UInt64, _ arguments: Arguments = Arguments(), payload: [UInt8] = [],
              capacity: Int = 1 << 20, uid: UInt32 = 0, gid: UInt32 = 0) -> Answer {
        unique += 1
        let length = UInt32(FUSE.inHeaderSize + arguments.bytes.count + payload.count)
        let header = FUSEInHeader(length: length, opcode: opcode.rawValue, unique: unique, nodeID: node, uid: uid, gid: gid, pid: 1)
        let io = BytesIO(payload: payload)
        guard let reply = server.serve(header.encoded + arguments.bytes, replyCapacity: capacity, io: io) else {
            return Answer(error: 1, body: [], data: [])
        }
        precondition(reply.unique == unique)
        precondition(Int(reply.header.length) == FUSE.outHeaderSize + reply.body.count + reply.dataLength)
        return Answer(error: reply.error, body: reply.body, data: io.data)
    }

    func lookup(_ name: String, in parent: UInt64 = FUSE.rootNodeID) -> Answer {
        call(.lookup, node: parent, Arguments().name(name))
    }

    /// CREATE with O_RDWR: (entry answer, file handle).
    func create(_ name: String, in parent: UInt64 = FUSE.rootNodeID, mode: UInt32 = 0o100644, flags: UInt32 = UInt32(O_RDWR),
                uid: UInt32 = 0, gid: UInt32 = 0) -> (Answer, UInt64) {
        let answer = call(.create, node: parent, Arguments().u32(flags).u32(mode).u32(0o022).u32(0).name(name), uid: uid, gid: gid)
        return (answer, answer.error == 0 ? answer.u64(at: FUSE.entryOutSize) : 0)
    }

    func open(_ node: UInt64, flags: UInt32 = UInt32(O_RDONLY)) -> (Answer, UInt64) {
        let answer = call(.open, node: node, Arguments().u32(flags).u32(0))
        return (answer, answer.error == 0 ? answer.u64(at: 0) : 0)
    }

    func write(_ node: UInt64, handle: UInt64, at offset: UInt64, _ bytes: [UInt8]) -> Answer {
        call(.write, node: node, Arguments().u64(handle).u64(offset).u32(UInt32(bytes.count)).u32(0).u64(0).u32(0).u32(0), payload: bytes)
    }

    func read(_ node: UInt64, handle: UInt64, at offset: UInt64, size: UInt32) -> Answer {
        call(.read, node: node, Arguments().u64(handle).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0))
    }

    func mkdir(_ name: String, in parent: UInt64 = FUSE.rootNodeID, mode: UInt32 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0) -> Answer {
        call(.mkdir, node: parent, Arguments().u32(mode).u32(0o022).name(name), uid: uid, gid: gid)
    }

    /// Every name READDIR(PLUS) lists from offset 0, following the offsets it returns.
    func list(_ directory: UInt64, plus: Bool = false, size: UInt32 = 4096) -> (names: [String], nodes: [UInt64], error: Int32) {
        let openedDirectory = call(.opendir, node: directory, Arguments().u32(UInt32(O_RDONLY)).u32(0))
        guard openedDirectory.error == 0 else { return ([], [], openedDirectory.error) }
        let directoryHandle = openedDirectory.u64(at: 0)
        defer { call(.releasedir, node: directory, Arguments().u64(directoryHandle).u32(0).u32(0).u64(0)) }
        var names: [String] = []
        var nodes: [UInt64] = []
        var offset: UInt64 = 0
        while true {
            let answer = call(plus ? .readdirplus : .readdir, node: directory,
                              Arguments().u64(directoryHandle).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0))
            guard answer.error == 0 else { return (names, nodes, answer.error) }
            if answer.body.isEmpty { return (names, nodes, 0) }
            var position = 0
            while position < answer.body.count {
                if plus {
                    nodes.append(answer.u64(at: position))
                    position += FUSE.entryOutSize
                }
                let next = answer.u64(at: position + 8)
                let length = Int(answer.u32(at: position + 16))
                names.append(String(decoding: answer.body[(position + 24)..<(position + 24 + length)], as: UTF8.self))
                position += (24 + length + 7) / 8 * 8
                offset = next
            }
        }
    }
}

import CLinux
import HostOS
import KVM
import KasaJSON
import VMM
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// `--api-socket PATH`: changes to a running VM, one JSON object per line each way.
///
///     {"action": "attach-drive", "path": "/images/app.img"}
///       -> {"ok": true, "index": 2, "device": "/dev/vdc"}
///     {"action": "attach-drive", "path": "app.img", "descriptor": true}  + the file's fd
///       (SCM_RIGHTS): the VMM uses the descriptor and names it by path (kasa-vmm --user,
///       which cannot open the runtime's images itself)
///     {"action": "detach-drive", "index": 2}
///       -> {"ok": true}
///     {"action": "pause"} / {"action": "resume"}
///       -> {"ok": true}
///     {"action": "snapshot", "path": "/run/vc/vm/template", "settle_seconds": 30}
///       -> {"ok": true, "memory_bytes": N, "memory_bytes_written": M}
///       (a running VM is paused for the snapshot and continues after it; with
///       settle_seconds, 0-600, an open vsock connection is waited out that long
///       instead of refused at once)
///     anything else -> {"ok": false, "error": "..."}
///
/// The socket is created with mode 0600 (only the VMM's user may drive it). One client
/// is served at a time, on a thread of its own; a malformed request is answered, never
/// fatal to the VM.
struct ControlSocket {
    static let maximumLineLength = 64 * 1024

    let listener: UnixSocketListener

    /// Binds the socket before the guest starts, so a client that sees the file can connect.
    init(path: String) throws {
        do {
            listener = try UnixSocketListener(path: path)
        } catch {
            throw VMMError.deviceSetupFailed("--api-socket \(path): \(error)")
        }
    }

    /// Serves clients until the process exits.
    func serve(_ vm: MicroVM) throws {
        let listener = self.listener
        _ = try HostThread(name: "kasa-api") {
            while let client = listener.accept() {
                ControlSocket.converse(client, vm: vm)
                close(client)
            }
        }
    }
    /// Descriptors a client attaches (SCM_RIGHTS) go to the first request line answered
    /// after they arrive: `"descriptor": true` in it claims the first; whatever the line
    /// does not claim is closed once it is answered, so a client cannot make the VMM hoard
    /// them. A client sending descriptors sends one request per connection (as the
    /// runtime does), so that no read joins its line to an earlier one.
    static func converse(_ client: Int32, vm: MicroVM) {
        var pending: [UInt8] = []
        var descriptors: [Int32] = []
        defer { descriptors.forEach { _ = close($0) } }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var received = [Int32](repeating: -1, count: 4)
        while true {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                let reply = answer(to: line, descriptors: &descriptors, vm: vm)
                descriptors.forEach { _ = close($0) }
                descriptors.removeAll()
                guard send(reply, to: client) else { return }
            }
            if pending.count > maximumLineLength {
                _ = send(failure("request longer than \(maximumLineLength) bytes"), to: client)
                return
            }
            var count: Int32 = 0, truncated: Int32 = 0
            let length = buffer.withUnsafeMutableBytes { bytes in
                received.withUnsafeMutableBufferPointer { slots in
                    clinux_receive_with_descriptors(client, bytes.baseAddress, UInt(bytes.count), slots.baseAddress,
                                                    Int32(slots.count), &count, &truncated)
                }
            }
            descriptors += received.prefix(Int(count))
            if length < 0 && errno == EINTR { continue }
            if length <= 0 { return }
            if truncated != 0 {
                _ = send(failure("more than \(received.count) descriptors came with a request"), to: client)
                return
            }
            pending += buffer[0..<length]
        }
    }

    static func answer(to line: [UInt8], descriptors: inout [Int32], vm: MicroVM) -> JSONValue {
        let request: JSONValue
        do {
            request = try JSONValue(parsing: line)
        } catch {
            return failure("not a JSON object: \(error)")
        }
        guard let action = request["action"]?.stringValue else { return failure("the request has no \"action\"") }
        do {
            switch action {
            case "attach-drive":
                guard let path = request["path"]?.stringValue, !path.isEmpty else { return failure("attach-drive needs \"path\"") }
                let drive: AttachedDrive
                if request["descriptor"] == .bool(true) {
                    guard !descriptors.isEmpty else {
                        return failure("attach-drive with \"descriptor\": no descriptor came with the request (SCM_RIGHTS)")
                    }
                    drive = try vm.attachDrive(descriptor: descriptors.removeFirst(), name: path, identifier: request["id"]?.stringValue)
                } else {
                    drive = try vm.attachDrive(path: path, identifier: request["id"]?.stringValue)
                }
                return .object(JSONObject([("ok", .bool(true)), ("index", .number(JSONNumber(drive.index))),
                                           ("device", .string("/dev/" + drive.guestName))]))
            case "detach-drive":
                guard let index = request["index"]?.numberValue?.integer(as: Int.self) else {
                    return failure("detach-drive needs \"index\"")
                }
                try vm.detachDrive(index: index)
                return .object(JSONObject([("ok", .bool(true))]))
            case "pause":
                try vm.pause()
                return .object(JSONObject([("ok", .bool(true))]))
            case "resume":
                vm.resume()
                return .object(JSONObject([("ok", .bool(true))]))
            case "snapshot":
                guard let path = request["path"]?.stringValue, !path.isEmpty else { return failure("snapshot needs \"path\" (a directory)") }
                var settle = 0
                if let value = request["settle_seconds"] {
                    guard let seconds = value.numberValue?.integer(as: Int.self), (0...600).contains(seconds) else {
                        return failure("snapshot's \"settle_seconds\" must be a whole number of seconds, 0 to 600")
                    }
                    settle = seconds
                }
                let summary = try vm.snapshot(to: path, vmmVersion: CommandLineOptions.version, settleSeconds: Double(settle))
                return .object(JSONObject([("ok", .bool(true)), ("memory_bytes", .number(JSONNumber(Int(summary.memoryBytes)))),
                                           ("memory_bytes_written", .number(JSONNumber(Int(summary.memoryBytesWritten))))]))
            default:
                return failure("unknown action \"\(action)\" (attach-drive, detach-drive, pause, resume, snapshot)")
            }
        } catch {
            return failure("\(error)")
        }
    }

    static func failure(_ message: String) -> JSONValue {
        .object(JSONObject([("ok", .bool(false)), ("error", .string(message))]))
    }

    static func send(_ value: JSONValue, to client: Int32) -> Bool {
        writeFully(client, Array((value.jsonText + "\n").utf8), isSocket: true)
    }
}

import AgentProtocol
import CLinux
import KasaJSON
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// kasa-vmm's control socket (`--api-socket`): one JSON request per line, one answer per
/// line. A connection per request keeps callers on different threads out of each other's way.
public struct VMMControlClient: Sendable {
    public let socketPath: String
    public let timeout: Double

    public init(socketPath: String, timeout: Double = 30) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// Puts the image at `path` into the VM's next empty drive slot; returns the slot's
    /// index and the guest's device path (/dev/vdc). `serial` is what the guest reads as
    /// the disk's virtio serial (GET_ID). The runtime opens the image and sends kasa-vmm
    /// the descriptor: a VMM running as its own user (`vmm_user`) cannot open the cache's
    /// root-only files, and its jail need not hold the cache (other pods' images) at all.
    public func attachDrive(path: String, serial: String) throws(RuntimeError) -> (index: Int, device: String) {
        let image = open(path, O_RDONLY | O_CLOEXEC)
        guard image >= 0 else { throw RuntimeError.host("cannot open \(path) for the VM: \(HostFile.lastErrorDescription())") }
        defer { close(image) }
        let answer = try request(JSONObject([("action", .string("attach-drive")), ("path", .string(path)), ("id", .string(serial)),
                                             ("descriptor", .bool(true))]), descriptor: image)
        guard let index = answer["index"]?.numberValue?.integer(as: Int.self), let device = answer["device"]?.stringValue else {
            throw RuntimeError.sandbox("kasa-vmm's attach-drive answer lacks index or device: \(answer.jsonText)")
        }
        return (index, device)
    }

    public func detachDrive(index: Int) throws(RuntimeError) {
        _ = try request(JSONObject([("action", .string("detach-drive")), ("index", .number(JSONNumber(index)))]))
    }

    /// Saves the VM (paused for the duration) into `directory`: kasa-vmm's snapshot files.
    /// `settleSeconds`: how long kasa-vmm may wait for the guest to let go of open vsock
    /// connections before it refuses.
    public func snapshot(to directory: String, settleSeconds: Int = 0) throws(RuntimeError) {
        _ = try request(JSONObject([("action", .string("snapshot")), ("path", .string(directory)),
                                    ("settle_seconds", .number(JSONNumber(settleSeconds)))]))
    }

    /// Sends `request`, with `attached` (SCM_RIGHTS) on its first byte when given.
    func request(_ request: JSONObject, descriptor attached: Int32? = nil) throws(RuntimeError) -> JSONValue {
        let descriptor: Int32
        switch UnixStream.connect(socketPath) {
        case .success(let connected): descriptor = connected
        case .failure(let error): throw RuntimeError.sandbox("kasa-vmm's control socket \(socketPath): \(error)")
        }
        defer { close(descriptor) }
        var line = Array((JSONValue.object(request).jsonText + "\n").utf8)
        if let attached {
            var sent = -1
            repeat {
                sent = line.withUnsafeBytes { clinux_send_with_descriptor(descriptor, $0.baseAddress, UInt($0.count), attached) }
            } while sent < 0 && errno == EINTR
            guard sent > 0 else {
                throw RuntimeError.sandbox("kasa-vmm's control socket: sending a descriptor: \(HostFile.lastErrorDescription())")
            }
            line.removeFirst(sent)
        }
        guard DescriptorIO.writeAll(descriptor, line) else {
            throw RuntimeError.sandbox("kasa-vmm's control socket closed while sending a request")
        }
        guard let line = UnixStream.readLine(descriptor, timeout: timeout, limit: 64 * 1024) else {
            throw RuntimeError.sandbox("kasa-vmm did not answer on its control socket within \(Int(timeout)) s")
        }
        guard let answer = try? JSONValue(parsing: line) else {
            throw RuntimeError.sandbox("kasa-vmm's control socket answered something that is not JSON: \(line.prefix(200))")
        }
        guard answer["ok"] == .bool(true) else {
            throw RuntimeError.sandbox("kasa-vmm: \(answer["error"]?.stringValue ?? answer.jsonText)")
        }
        return answer
    }
}

import AgentProtocol
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

    /// Puts an image into the VM's next empty drive slot; returns the slot's index and the
    /// guest's device path (/dev/vdc).
    /// Fills an empty drive slot with `path`; `serial` is what the guest reads as the disk's
    /// virtio serial (GET_ID).
    public func attachDrive(path: String, serial: String) throws(RuntimeError) -> (index: Int, device: String) {
        let answer = try request(JSONObject([("action", .string("attach-drive")), ("path", .string(path)), ("id", .string(serial))]))
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

    func request(_ request: JSONObject) throws(RuntimeError) -> JSONValue {
        let descriptor: Int32
        switch UnixStream.connect(socketPath) {
        case .success(let connected): descriptor = connected
        case .failure(let error): throw RuntimeError.sandbox("kasa-vmm's control socket \(socketPath): \(error)")
        }
        defer { close(descriptor) }
        guard DescriptorIO.writeAll(descriptor, Array((JSONValue.object(request).jsonText + "\n").utf8)) else {
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

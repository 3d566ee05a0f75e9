#if canImport(Glibc)
import Glibc
#endif

/// The host names a container's disk by its virtio serial, the way udev would link it:
/// `/dev/disk/by-id/virtio-<serial>`. The guest has no udev, so the agent finds the disk
/// itself: the virtio-blk disk whose sysfs `serial` (read from the device by GET_ID each
/// time) is that serial. The host thereby never guesses the guest's vdX order, and a drive
/// slot refilled for another container answers with the new container's serial.
enum VirtioDiskName {
    static let byIDPrefix = "/dev/disk/by-id/virtio-"

    /// The block device `source` names: itself unless it is a by-id virtio name, else the
    /// disk with that serial, waiting up to `timeout` seconds for it to appear.
    static func resolve(_ source: String, sysfs: String = "/sys", devices: String = "/dev",
                        timeout: Double = 10) throws -> String {
        guard source.hasPrefix(byIDPrefix) else { return source }
        // A link udev (or anyone) made is used as it is.
        if FileManagerLite.exists(source) { return source }
        let serial = String(source.dropFirst(byIDPrefix.count))
        guard !serial.isEmpty, !serial.contains("/") else {
            throw AgentError(.invalidArgument, "\(source): not a virtio disk name")
        }
        let attempts = max(1, Int(timeout * 20))
        for attempt in 0..<attempts {
            if let name = disk(withSerial: serial, sysfs: sysfs) { return devices + "/" + name }
            if attempt + 1 < attempts { usleep(50_000) }
        }
        throw AgentError(.notFound, "no virtio disk has serial \(serial) (\(source))")
    }

    /// The `vd*` disk whose serial is `serial`.
    static func disk(withSerial serial: String, sysfs: String) -> String? {
        FileManagerLite.names(in: sysfs + "/block").sorted().first { name in
            guard name.hasPrefix("vd"),
                  let text = FileManagerLite.read(sysfs + "/block/" + name + "/serial", limit: 64) else { return false }
            // The kernel prints the 20 GET_ID bytes up to the first NUL, with a newline.
            return text.split(separator: "\n").first.map(String.init) == serial
        }
    }
}

import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// A pod's drive slot is refilled with another container's image while the VM runs. If a
/// mount of the slot's previous filesystem still lives (in the mount namespace of a
/// container process that is still exiting, after the agent's lazy unmount), mounting the
/// device again would hand back that old superblock, its cached directories now pointing
/// into the new image's blocks. So before a block device is mounted, the agent waits
/// until nobody but its own mount table holds it.
enum BlockDeviceRelease {
    /// Returns once `source` (when it is a block device) can be claimed exclusively, or is
    /// mounted in the agent's own namespace (deliberate sharing); throws after `timeout`
    /// (well inside the host's 30 s call timeout on hardware, so this error is the one
    /// containerd sees; a release normally takes milliseconds).
    static func waitUntilReleased(_ source: String, timeout: Double = 15,
                                  mountInfoPath: String = "/proc/self/mountinfo") throws {
        var info = stat()
        guard stat(source, &info) == 0, info.st_mode & S_IFMT == S_IFBLK else { return }
        let device = majorMinor(UInt64(info.st_rdev))
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int(timeout * 1000)))
        while true {
            let fd = open(source, O_RDONLY | O_EXCL | O_CLOEXEC)
            if fd >= 0 {
                close(fd)
                return
            }
            guard errno == EBUSY else { return }  // mount reports anything else
            if isMounted(device: device, mountInfoPath: mountInfoPath) { return }
            if clock.now >= deadline {
                throw AgentError(.unavailable, "\(source) is still held by a mount outside the agent's (a container that has not finished exiting) after \(Int(timeout)) s; mounting it now would show that filesystem's stale state")
            }
            usleep(20_000)
        }
    }

    /// "major:minor" of a Linux dev_t (glibc's major()/minor() are macros Swift cannot call).
    static func majorMinor(_ device: UInt64) -> String {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & 0xffff_ff00)
        return "\(major):\(minor)"
    }

    /// Whether a mount in `mountInfoPath` (/proc/PID/mountinfo format) is of `device`
    /// ("major:minor", the third field).
    static func isMounted(device: String, mountInfoPath: String) -> Bool {
        guard let text = FileManagerLite.read(mountInfoPath) else { return false }
        return text.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ", maxSplits: 3)
            return fields.count > 2 && fields[2] == device
        }
    }
}

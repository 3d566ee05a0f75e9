import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox's shared directory (`shared_fs = "virtio-fs"`): `<state>/shared` on the host,
/// served by kasa-vmm's virtio-fs device with Kata's tag and mounted once by the agent
/// (CreateSandbox storage). A container's rootfs and its bind mounts are bind-mounted
/// into `<container>/...` beneath it, so the guest sees the host's files live, with no
/// copy and no image.
public struct VirtioFSExport: Sendable, Equatable {
    /// Kata's mount tag for the sandbox's shared directory.
    public static let tag = "kataShared"
    /// Where the agent mounts it in the guest.
    public static let guestMountPoint = "/run/kata-containers/shared/containers"

    public let hostDirectory: String
    /// `virtio_fs_cache`: never, auto or always.
    public let cache: String

    public init(stateDirectory: String, cache: String) {
        hostDirectory = stateDirectory + "/shared"
        self.cache = cache
    }

    /// The directory, root's only: what is shared is the containers' business.
    func prepare() throws(RuntimeError) {
        try HostFile.makeDirectories(hostDirectory, mode: 0o700)
        guard chmod(hostDirectory, 0o700) == 0 else {
            throw RuntimeError.host("chmod \(hostDirectory): \(HostFile.lastErrorDescription())")
        }
        // A jailed kasa-vmm holds a slave copy of it: later containers' mounts must reach it.
        try HostMounts.makeSharedMountPoint(hostDirectory)
    }

    var vmmArguments: [String] {
        ["--shared-dir", "tag=\(VirtioFSExport.tag),path=\(hostDirectory),cache=\(cache)"]
    }

    /// The CreateSandbox storage that mounts the export in the guest.
    public var storage: AgentMount {
        var mount = AgentMount()
        mount.source = VirtioFSExport.tag
        mount.type = "virtiofs"
        mount.target = VirtioFSExport.guestMountPoint
        mount.options = ["nodev"]
        return mount
    }

    /// A container id as a directory name: one path component.
    static func checked(_ containerID: String) throws(RuntimeError) -> String {
        guard !containerID.isEmpty, !containerID.contains("/"), containerID != ".", containerID != "..",
              !containerID.hasPrefix(".") else {
            throw RuntimeError.invalidInput("container id '\(containerID)' cannot name a shared directory")
        }
        return containerID
    }

    /// Binds the container's root filesystem (a host directory: containerd's mounted
    /// snapshot, or `--rootfs DIR`) into the export; the mount tells the agent where the
    /// guest finds it. The container writes to it as it would under runc.
    public func shareRootfs(_ rootfs: String, containerID: String) throws(RuntimeError) -> AgentMount {
        guard HostFile.isDirectory(rootfs) else { throw RuntimeError.invalidInput("the rootfs \(rootfs) is not a directory") }
        let relative = try VirtioFSExport.checked(containerID) + "/rootfs"
        try HostMounts.bind(rootfs, at: hostDirectory + "/" + relative, readOnly: false)
        var mount = AgentMount()
        mount.source = VirtioFSExport.guestMountPoint + "/" + relative
        mount.type = "bind"
        mount.options = ["bind"]
        return mount
    }

    /// Binds one of the container's bind-mount sources into the export; the guest path
    /// the container's mount should name instead.
    func share(_ source: String, as relative: String, readOnly: Bool) throws(RuntimeError) -> String {
        try HostMounts.bind(source, at: hostDirectory + "/" + relative, readOnly: readOnly)
        return VirtioFSExport.guestMountPoint + "/" + relative
    }

    /// Undoes what was shared for a container (the agent has let go of it): its mounts
    /// come off and its directory goes. false: a mount could not be taken off (the
    /// directory is then left, never deleted through).
    @discardableResult
    public func unshare(containerID: String) -> Bool {
        guard let name = try? VirtioFSExport.checked(containerID) else { return false }
        let directory = hostDirectory + "/" + name
        guard HostFile.exists(directory) else { return true }
        guard HostMounts.unmountAll(under: HostFile.realPath(directory) ?? directory) else { return false }
        return HostFile.removeTree(directory)
    }

    /// Takes every mount off the export (the sandbox is gone); true when none is left.
    @discardableResult
    public func release() -> Bool {
        guard HostFile.exists(hostDirectory) else { return true }
        return HostMounts.unmountAll(under: HostFile.realPath(hostDirectory) ?? hostDirectory)
    }
}

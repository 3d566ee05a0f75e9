import AgentProtocol
import FoundationEssentials  // Data: the type of swift-protobuf's bytes fields
import KasaJSON
#if canImport(Glibc)
import Glibc
#endif

/// Bind mounts of host paths in a VM that shares no file system with the host: each
/// bind's source (a file, or a directory tree of files and symlinks) is copied into the
/// agent's shared-files directory with CopyFile, and the mount is pointed at the copy.
/// This is what CRI's /etc/hosts, /etc/hostname, /etc/resolv.conf, termination log,
/// secrets and config maps need; the copy is taken once, at create (a later change on
/// the host does not reach the container).
///
/// Bounded: a container's copies may total `limitBytes` in at most `limitEntries`
/// entries; a larger host tree, or a socket or device, is refused with the mount named
/// (such a volume needs a shared file system, which Kasa does not have yet).
public struct HostBindMounts {
    public static let limitBytes = 16 << 20
    public static let limitEntries = 4096
    /// Per CopyFile request (the agent takes at most 1 MiB of data in one).
    static let chunkBytes = 1 << 20

    /// What the copies need, read from the host once (before a VM boots for them). Paths
    /// are relative to the agent's shared-files directory, known only once it answers:
    /// `located(in:_:)` makes them the guest's.
    public struct Plan: Sendable {
        /// In order: parents before children.
        var requests: [AgentCopyFileRequest] = []
        /// The mounts (by index) whose source becomes a copy, and that copy.
        var sources: [(mount: Int, path: String)] = []
        /// With a shared directory (`shared_fs = "virtio-fs"`): the mounts (by index) whose
        /// source is bound into it instead, at `path` beneath it.
        var shares: [(mount: Int, source: String, path: String, readOnly: Bool)] = []

        public var isEmpty: Bool { requests.isEmpty && shares.isEmpty }

        /// The requests with guest paths, and `ociSpec` with the bind mounts pointing at
        /// the copies.
        public func located(in guestDirectory: String, _ ociSpec: JSONObject) -> (requests: [AgentCopyFileRequest], ociSpec: JSONObject) {
            var spec = ociSpec
            var mounts = ociSpec["mounts"]?.arrayValue ?? []
            for (index, path) in sources where mounts.indices.contains(index) {
                guard var mount = mounts[index].objectValue else { continue }
                mount["source"] = .string(guestDirectory + "/" + path)
                mounts[index] = .object(mount)
            }
            if !sources.isEmpty { spec["mounts"] = .array(mounts) }
            let requests = self.requests.map { request in
                var located = request
                located.path = guestDirectory + "/" + request.path
                return located
            }
            return (requests, spec)
        }
    }

    /// `sharing`: the sandbox has a shared directory; binds are shared live through it
    /// (no copy, no size limit), except the pod's /dev/shm, which stays the guest's own.
    public static func plan(_ ociSpec: JSONObject, containerID: String, sharing: Bool = false,
                            limitBytes: Int = limitBytes, limitEntries: Int = limitEntries) throws(RuntimeError) -> Plan {
        var plan = Plan()
        let mounts = ociSpec["mounts"]?.arrayValue ?? []
        var budget = Budget(bytesLeft: limitBytes, entriesLeft: limitEntries, limitBytes: limitBytes, limitEntries: limitEntries)
        for index in mounts.indices where isBind(mounts[index]) {
            guard let source = mounts[index]["source"]?.stringValue, source.hasPrefix("/") else {
                throw RuntimeError.invalidInput("mount \(index): a bind mount needs an absolute source path")
            }
            let destination = mounts[index]["destination"]?.stringValue ?? "?"
            if destination == "/dev/shm" && HostFile.isDirectory(source) {
                // CRI binds the pod's shm directory into every container of the pod: one
                // directory in the guest, shared by all of them (POSIX shared memory between
                // a pod's containers), instead of a copy each.
                var request = AgentCopyFileRequest()
                request.path = podSharedMemoryName
                request.fileMode = UInt32(S_IFDIR) | 0o1777
                request.dirMode = 0o755
                plan.requests.append(request)
                plan.sources.append((index, podSharedMemoryName))
                continue
            }
            let name = source.split(separator: "/").last.map(String.init) ?? "root"
            let copyPath = "\(containerID)/\(index)-\(name)"
            if sharing {
                guard HostFile.exists(source) else {
                    throw RuntimeError.invalidInput("bind mount \(source) on \(destination): \(HostFile.lastErrorDescription())")
                }
                let options = mounts[index]["options"]?.arrayValue?.compactMap(\.stringValue) ?? []
                plan.shares.append((index, source, "\(containerID)/mounts/\(index)-\(name)", options.contains("ro")))
                continue
            }
            do throws(RuntimeError) {
                // The source itself is followed, as mount(2) follows it on the host (a
                // resolv.conf that links elsewhere); symlinks inside a tree stay symlinks.
                try copy(source, to: copyPath, into: &plan.requests, budget: &budget, follow: true)
            } catch {
                throw RuntimeError.invalidInput("bind mount \(source) on \(destination): \(error.description)")
            }
            plan.sources.append((index, copyPath))
        }
        return plan
    }

    static func isBind(_ mount: JSONValue) -> Bool {
        let options = mount["options"]?.arrayValue?.compactMap(\.stringValue) ?? []
        return mount["type"]?.stringValue == "bind" || options.contains("bind") || options.contains("rbind")
    }

    /// The guest directory a pod's /dev/shm binds share (not a container id: those start
    /// with a letter or digit).
    static let podSharedMemoryName = ".pod-shm"

    struct Budget {
        var bytesLeft: Int
        var entriesLeft: Int
        let limitBytes: Int
        let limitEntries: Int
    }

    private static func copy(_ source: String, to guestPath: String, into requests: inout [AgentCopyFileRequest],
                             budget: inout Budget, follow: Bool = false) throws(RuntimeError) {
        var info = stat()
        guard (follow ? stat(source, &info) : lstat(source, &info)) == 0 else {
            throw RuntimeError.invalidInput("\(source): \(HostFile.lastErrorDescription())")
        }
        budget.entriesLeft -= 1
        guard budget.entriesLeft >= 0 else {
            throw RuntimeError.invalidInput("more than \(budget.limitEntries) files to copy into the VM (no shared file system yet)")
        }
        var request = AgentCopyFileRequest()
        request.path = guestPath
        request.fileMode = UInt32(info.st_mode)
        request.dirMode = 0o755
        request.uid = Int32(bitPattern: info.st_uid)
        request.gid = Int32(bitPattern: info.st_gid)
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            requests.append(request)
            for name in try HostFile.directoryEntries(source).sorted() {
                try copy(source + "/" + name, to: guestPath + "/" + name, into: &requests, budget: &budget)
            }
        case S_IFLNK:
            var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let length = readlink(source, &target, target.count - 1)
            guard length > 0 else { throw RuntimeError.invalidInput("readlink \(source): \(HostFile.lastErrorDescription())") }
            request.data = Data(target[0..<length].map { UInt8(bitPattern: $0) })
            requests.append(request)
        case S_IFREG:
            budget.bytesLeft -= Int(info.st_size)
            guard budget.bytesLeft >= 0 else {
                throw RuntimeError.invalidInput("more than \(budget.limitBytes) bytes to copy into the VM (no shared file system yet)")
            }
            // At most what stat saw: a file growing meanwhile cannot break the budget.
            guard let read = HostFile.readBytes(source, limit: Int(info.st_size)) else {
                throw RuntimeError.invalidInput("read \(source): \(HostFile.lastErrorDescription())")
            }
            let bytes = Array(read.prefix(Int(info.st_size)))
            request.fileSize = Int64(bytes.count)
            var offset = 0
            repeat {
                let end = min(bytes.count, offset + chunkBytes)
                var chunk = request
                chunk.offset = Int64(offset)
                chunk.data = Data(bytes[offset..<end])
                requests.append(chunk)
                offset = end
            } while offset < bytes.count
        default:
            throw RuntimeError.invalidInput("\(source) is not a regular file, directory or symlink: it cannot be copied into the VM")
        }
    }
}

extension WorkloadSpec {
    /// The copies its bind mounts of host paths need, read now: a missing source, a
    /// socket or an oversized tree is the user's error, reported before any VM boots.
    public func hostBindMounts(containerID: String, sharing: Bool = false) throws(RuntimeError) -> HostBindMounts.Plan {
        try HostBindMounts.plan(ociSpec, containerID: containerID, sharing: sharing)
    }

    /// Copies `binds` into the sandbox through `agent` and returns the workload to create
    /// the container from, its binds pointing at the copies. With nothing to copy it is
    /// this workload, and the agent is not asked anything.
    public func copying(_ binds: HostBindMounts.Plan, agent: SandboxAgent, sharing export: VirtioFSExport? = nil) throws -> WorkloadSpec {
        guard !binds.isEmpty else { return self }
        var shared = self
        if !binds.shares.isEmpty {
            guard let export else { throw RuntimeError.sandbox("the sandbox has no shared directory for its bind mounts") }
            var mounts = ociSpec["mounts"]?.arrayValue ?? []
            for share in binds.shares where mounts.indices.contains(share.mount) {
                guard var mount = mounts[share.mount].objectValue else { continue }
                mount["source"] = .string(try export.share(share.source, as: share.path, readOnly: share.readOnly))
                mounts[share.mount] = .object(mount)
            }
            shared.ociSpec["mounts"] = .array(mounts)
        }
        guard !binds.requests.isEmpty else { return shared }
        return try shared.copyingFiles(binds, agent: agent)
    }

    private func copyingFiles(_ binds: HostBindMounts.Plan, agent: SandboxAgent) throws -> WorkloadSpec {
        let details = try agent.guestDetails()
        guard !details.sharedFilesDirectory.isEmpty else {
            throw RuntimeError.sandbox("the agent has no shared-files directory (protocol version 3 or later is needed for bind mounts)")
        }
        let located = binds.located(in: details.sharedFilesDirectory, ociSpec)
        for request in located.requests {
            do {
                try agent.copyFile(request)
            } catch let error as TTRPCCallError {
                throw TTRPCCallError(code: error.code, message: "copying bind-mounted host files into the VM: \(error.message)")
            }
        }
        var copied = self
        copied.ociSpec = located.ociSpec
        return copied
    }
}

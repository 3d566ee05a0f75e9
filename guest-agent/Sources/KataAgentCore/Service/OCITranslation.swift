import AgentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// From the OCI JSON the host sends to what the launcher and the cgroup manager take,
/// with spec errors reported as INVALID_ARGUMENT and a missing rootfs as NOT_FOUND.
enum OCITranslation {
    static func parse(_ json: [UInt8]) throws -> OCISpec {
        do {
            return try OCISpec.parse(json)
        } catch {
            throw AgentError(.invalidArgument, "invalid OCI spec (\(json.count) bytes): \(error)")
        }
    }

    /// The container's first process. `rootfs` is where the agent mounted the request's
    /// rootfs; without one, the spec's own absolute root.path is used (host-process mode,
    /// or a rootfs shared into the guest).
    static func launchSpec(_ spec: OCISpec, rootfs: String?) throws -> ContainerLaunchSpec {
        let root: String
        if let rootfs {
            root = rootfs
        } else {
            guard let path = spec.root?.path, path.hasPrefix("/") else {
                throw AgentError(.invalidArgument, "no rootfs mounts were given and root.path is not an absolute path")
            }
            root = path
        }
        var status = stat()
        guard stat(root, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            throw AgentError(.notFound, "rootfs \(root) does not exist or is not a directory")
        }
        do {
            return try spec.launchSpec(rootfs: root)
        } catch {
            throw AgentError(.invalidArgument, "invalid OCI spec: \(error)")
        }
    }

    /// linux.resources (at create, or an update's LinuxResources) in cgroup terms.
    static func resources(_ resources: OCISpec.Resources?) -> ContainerResources {
        ContainerResources(memoryLimit: resources?.memory?.limit, cpuQuota: resources?.cpu?.quota,
                           cpuPeriod: resources?.cpu?.period, pidsLimit: resources?.pids?.limit)
    }

    /// An update's LinuxResources JSON: its limits (`resources(_:)`) and device rules.
    static func resources(json: [UInt8]) throws -> OCISpec.Resources {
        do {
            return try OCISpec.decode(OCISpec.Resources.self, from: json, what: "resources")
        } catch {
            throw AgentError(.invalidArgument, "invalid resources: \(error)")
        }
    }

    /// An exec: the process JSON joined to the running container.
    static func execSpec(processJSON: [UInt8], container: ContainerLaunchSpec, initPid: Int32) throws -> ContainerLaunchSpec {
        do {
            return try OCISpec.Process.parse(processJSON).launchSpec(joining: container, pid: initPid)
        } catch {
            throw AgentError(.invalidArgument, "invalid OCI process: \(error)")
        }
    }
}

import AgentProtocol
import FoundationEssentials  // Data: the type of swift-protobuf's bytes fields
import KasaJSON

/// The agent requests that set a workload up, built one way for `kata-runtime run` and
/// for the containerd shim.
extension WorkloadSpec {
    /// CreateSandbox for the sandbox `id`, with the spec's hostname, and the mount of the
    /// sandbox's shared directory when it has one.
    public func createSandboxRequest(sandboxID id: String, virtioFS: VirtioFSExport? = nil) -> AgentCreateSandboxRequest {
        var request = AgentCreateSandboxRequest()
        request.sandboxID = id
        request.hostname = ociSpec["hostname"]?.stringValue ?? ""
        if let virtioFS { request.storages.append(virtioFS.storage) }
        return request
    }

    /// CreateContainer for container `id` (its init process has the same id) on the
    /// rootfs mount the backend returned.
    public func createContainerRequest(containerID id: String, rootfs: AgentMount) -> AgentCreateContainerRequest {
        var request = AgentCreateContainerRequest()
        request.containerID = id
        request.execID = id
        request.ociSpecJson = Data(JSONValue.object(ociSpec).jsonText.utf8)
        request.rootfs = [rootfs]
        request.readonlyRootfs = ociSpec["root"]?["readonly"]?.boolValue ?? false
        return request
    }
}

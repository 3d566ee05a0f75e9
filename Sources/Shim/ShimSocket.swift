import Foundation
import KasaJSON
import Runtime

/// Where a shim listens: containerd's convention, /run/containerd/s/<sha256 of
/// "ADDRESS/NAMESPACE/GROUP">, which stays under the 106-byte socket path limit. The
/// group is the container id, or for a container of a Kubernetes pod the pod's sandbox
/// id, so every container of a pod reaches the same shim (one VM per pod).
public enum ShimSocket {
    public static let directory = "/run/containerd/s"

    public static func path(containerdAddress: String, namespace: String, group: String) -> String {
        directory + "/" + ContentHash.hexDigest(of: "\(containerdAddress)/\(namespace)/\(group)")
    }

    /// The pod sandbox id when the bundle's config.json says this container joins one
    /// (io.kubernetes.cri.container-type=container), else the container's own id.
    public static func group(bundle: String, id: String) -> String {
        guard let bytes = HostFile.readBytes(bundle + "/config.json"),
              let spec = try? JSONValue(parsing: bytes),
              let annotations = spec["annotations"]?.objectValue,
              annotations["io.kubernetes.cri.container-type"]?.stringValue == "container",
              let sandbox = annotations["io.kubernetes.cri.sandbox-id"]?.stringValue, !sandbox.isEmpty else {
            return id
        }
        return sandbox
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CAgentLinux

/// A container init started before its container is known (`__container-init --standby`):
/// everything that does not depend on the spec is done ahead — the exec of the agent
/// binary, the Swift runtime's start, the JSON decoder's first use, the new UTS, IPC and
/// PID namespaces and the fork of the process that will be the container's PID 1 — so
/// that CreateContainer pays only for the container's own set-up. On a host whose guest
/// kernel is emulated (kvm_pvm) that ahead-of-time part is seconds; in a VM template it
/// is done once, before the snapshot, for every clone (docs/architecture.md).
///
/// Descriptors as for `.create` (3: spec socket, 4: sync pipe, 5: start socket,
/// 6: exec-error pipe), except that 0-2 are /dev/null: the container's stdio arrives with
/// the spec, as SCM_RIGHTS on the spec socket. The forked child sends
/// `ContainerInitProtocol.standingBy` on the start socket once it waits for the spec;
/// from then on the protocol is the usual one.
extension ContainerInit {
    /// The largest first message (with the stdio descriptors) the launcher sends.
    static let firstSpecChunk = 4096

    static func standBy() -> Never {
        // The agent's thread that keeps standbys outlives them; if the agent dies, so do we.
        _ = kasa_set_pdeathsig(SIGKILL)
        warmUpDecoder()
        do {
            try containerCheck(kasa_unshare(Int32(KASA_CLONE_NEWUTS | KASA_CLONE_NEWIPC | KASA_CLONE_NEWPID)),
                               "unshare the container's new namespaces")
        } catch {
            fail(on: syncFd, "\(error)")
        }
        let (child, ready) = forkWithReadyPipe()
        if child == 0 {
            ContainerSys.sendAll(startFd, [ContainerInitProtocol.standingBy])
            let spec: ContainerLaunchSpec
            do {
                spec = try receiveSpec()
            } catch {
                fail(on: ready.write, "\(error)")
            }
            // Standbys made while containers run wait at low priority (ContainerInitStandby).
            _ = kasa_set_nice(0, 0)
            guard case .create = spec.namespaces else {
                fail(on: ready.write, "a standby container init only creates containers")
            }
            becomeContainer(spec, ready: ready.write) {
                // This process is the container's: it moves itself into its cgroup (the
                // usual path joins before the fork), joins the pod's shared namespaces
                // (replacing the ones made ahead) and only now gets its own mount
                // namespace, so that it sees the rootfs the agent mounted meanwhile.
                if let cgroup = spec.cgroupPath { try joinCgroup(cgroup) }
                if let shared = spec.sharedNamespaces { try joinNamespaces(of: shared.pid, only: Set(shared.kinds)) }
                try containerCheck(kasa_unshare(Int32(KASA_CLONE_NEWNS)), "unshare the container's mount namespace")
                try ContainerRootfs.setUp(spec)
                try ContainerProcessSetup.apply(spec)
            }
        }
        close(ready.write)
        for fd in [specFd, startFd, execErrorFd] { close(fd) }
        report(child, ready: ready.read)
    }

    /// Decodes a launch spec once, so that the decoder's code and data are paged in
    /// before the real one arrives.
    static func warmUpDecoder() {
        let sample = ContainerLaunchSpec(rootfs: "/", mounts: [.init(destination: "/proc", type: "proc", source: "proc")],
                                         hostname: "standby", args: ["true"], env: ["PATH=/bin"],
                                         rlimits: [.init(type: "RLIMIT_NOFILE", soft: 1024, hard: 1024)],
                                         maskedPaths: ["/proc/kcore"], capabilitySets: .init(keeping: ["CAP_CHOWN"]))
        if let bytes = try? JSONEncoder().encode(sample) { _ = try? JSONDecoder().decode(ContainerLaunchSpec.self, from: bytes) }
    }

    /// The spec and the container's stdio: the first message carries the three stdio
    /// descriptors, which become 0, 1 and 2; the rest of the spec follows to EOF.
    static func receiveSpec() throws -> ContainerLaunchSpec {
        var first = [UInt8](repeating: 0, count: firstSpecChunk)
        var passed: [Int32] = [-1, -1, -1]
        var count: Int32 = 0
        let received = kasa_receive_with_descriptors(specFd, &first, first.count, &passed, &count)
        guard received > 0 else {
            throw ContainerInitFailure(received == 0 ? "the launcher closed the spec socket"
                                                     : ContainerSys.failure("receive the launch spec"))
        }
        let stdio = passed.prefix(Int(count))
        defer { for fd in stdio { close(fd) } }
        guard stdio.count == 3 else {
            throw ContainerInitFailure("the launch spec came with \(count) stdio descriptors instead of 3")
        }
        for (target, fd) in stdio.enumerated() where dup2(fd, Int32(target)) < 0 {
            throw ContainerInitFailure(ContainerSys.failure("dup2 stdio descriptor \(target)"))
        }
        let bytes = Array(first.prefix(received)) + ContainerSys.readToEnd(specFd)
        close(specFd)
        do {
            return try JSONDecoder().decode(ContainerLaunchSpec.self, from: Data(bytes))
        } catch {
            throw ContainerInitFailure("decode launch spec: \(error)")
        }
    }
}

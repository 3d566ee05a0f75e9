import Foundation
import Testing

/// Pods as a kubelet starts them: containerd's CRI plugin with CNI (Debian's bridge and
/// host-local plugins) calls the shim with the specs CRI itself generates: the sandbox's
/// read-only pause container with its resolv.conf, hostname and /dev/shm mounts, and
/// application containers with CRI's security defaults, a read-only root among them. No
/// kubelet or crictl exists here: Tests/cri-client/cri.py sends each CRI call. containerd,
/// the bridge and the pods' network namespaces live in a network namespace the test makes.
@Suite(.serialized) struct CRITests {
    typealias Containerd = ContainerdTests.Containerd

    struct CallFailed: Error, CustomStringConvertible { let description: String }

    static let client = ContainerdTests.packageRoot.appending(path: "Tests/cri-client/cri.py").path

    /// One CRI RuntimeService call; the response as a JSON object. Debian's python3
    /// (with python3-grpcio) runs the client, not whatever python3 is first on PATH.
    @discardableResult
    static func call(_ containerd: Containerd, _ method: String, _ request: [String: Any],
                     timeout: Double = 600) throws -> [String: Any] {
        guard access("/usr/bin/python3", X_OK) == 0 else {
            throw ContainerdTests.Missing(description: "/usr/bin/python3 is missing (scripts/install-deps.sh installs it with python3-grpcio)")
        }
        let body = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let outcome = try ContainerdTests.run("/usr/bin/python3", [client, containerd.socket, method, body],
                                              environment: ["CRI_TIMEOUT": String(Int(timeout))], timeout: timeout + 30)
        guard outcome.status == 0 else {
            throw CallFailed(description: "CRI \(method) failed (\(outcome.status)): \(outcome.stderr)")
        }
        let object = try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8))
        return object as? [String: Any] ?? [:]
    }

    /// Imports an image built here (busybox, with `command`) into CRI's k8s.io namespace.
    /// The command lines (words joined by spaces) of running processes that mention `text`.
    static func commandLines(containing text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid -> String? in
            guard Int(pid) != nil, let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let line = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
            return line.contains(text) ? line : nil
        }
    }

    static func importImage(_ containerd: Containerd, name: String, command: [String]) throws {
        let archive = containerd.directory + "/image-\(UUID().uuidString.prefix(6)).tar"
        let commandJSON = String(decoding: try JSONSerialization.data(withJSONObject: command), as: UTF8.self)
        let build = try ContainerdTests.run("/bin/bash", [ContainerdTests.packageRoot.appending(path: "images/build-oci-archive.sh").path,
                                                          try ContainerdTests.busyboxRootfs(), archive, name, commandJSON], timeout: 120)
        try #require(build.status == 0, "images/build-oci-archive.sh: \(build.stderr)")
        let imported = try ContainerdTests.ctr(containerd, ["-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", archive],
                                               timeout: 120)
        try #require(imported.status == 0, "ctr images import \(name): \(imported.stderr)")
    }

    static func podConfig(name: String, directory: String, dns: [String: Any]?) -> [String: Any] {
        var config: [String: Any] = [
            "metadata": ["name": name, "uid": "uid-\(name)", "namespace": "default", "attempt": 0],
            "hostname": name,
            "log_directory": directory,
            "linux": [String: Any](),
        ]
        if let dns { config["dns_config"] = dns }
        return config
    }

    static func containerConfig(name: String, image: String, script: String, readonlyRoot: Bool = false,
                                runtimeDefaultSeccomp: Bool = false) -> [String: Any] {
        var security: [String: Any] = ["readonly_rootfs": readonlyRoot]
        if runtimeDefaultSeccomp { security["seccomp_profile_path"] = "runtime/default" }
        return [
            "metadata": ["name": name, "attempt": 0],
            "image": ["image": image],
            "command": ["sh", "-c", script],
            "log_path": name + ".log",
            "linux": ["security_context": security],
        ]
    }

    static func exec(_ containerd: Containerd, _ container: String, _ script: String) throws -> (stdout: String, status: Int) {
        let response = try call(containerd, "ExecSync", ["container_id": container, "cmd": ["sh", "-c", script], "timeout": 120],
                                timeout: 180)
        // bytes fields come back base64-encoded in protobuf's JSON form.
        let stdout = (response["stdout"] as? String).flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return (stdout, response["exit_code"] as? Int ?? 0)
    }

    /// The whole life of a pod with a DNS config and two application containers (one
    /// with a read-only root), as a kubelet drives it: the pod gets an address from CNI
    /// (in the bridge's subnet), its containers see the pod's resolv.conf and hostname,
    /// a read-only root refuses writes, 127.0.0.1 joins the two containers, CRI's log file
/// has the container's output; after
    /// stop and remove no shim, VM, sandbox state or pod network namespace is left.
    @Test(.timeLimit(.minutes(20)))
    func aPodStartsRunsAndGoesAwayThroughCRI() throws {
        let containerd = try Containerd(cri: .init(subnet6: "fd00:88:7::/64"))
        let busybox = "docker.io/kasa/busybox:test"
        try Self.importImage(containerd, name: containerd.cri!.sandboxImage,
                             command: ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"])
        try Self.importImage(containerd, name: busybox, command: ["sh"])
        let context = { "containerd log:\n\(containerd.tail)" }

        let logs = containerd.directory + "/pod-logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let dns: [String: Any] = ["servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"], "options": ["ndots:5"]]
        let pod = Self.podConfig(name: "kasa-pod", directory: logs, dns: dns)
        let podID: String
        do {
            let ran = try Self.call(containerd, "RunPodSandbox", ["config": pod, "runtime_handler": "kata"])
            podID = try #require(ran["pod_sandbox_id"] as? String, "\(ran)")
        } catch {
            Issue.record("RunPodSandbox: \(error)\n\(context())")
            return
        }
        let status = try Self.call(containerd, "PodSandboxStatus", ["pod_sandbox_id": podID])
        let podStatus = status["status"] as? [String: Any] ?? [:]
        #expect((podStatus["state"] as? Int ?? 0) == 0, "the pod is READY: \(podStatus)")
        let network = podStatus["network"] as? [String: Any] ?? [:]
        let ip = network["ip"] as? String ?? ""
        #expect(ip.hasPrefix("10.88.7."), "the pod's IP comes from the CNI subnet: \(podStatus)")
        let ip6 = (network["additional_ips"] as? [[String: Any]])?.first?["ip"] as? String ?? ""
        #expect(ip6.hasPrefix("fd00:88:7::"), "the pod's IPv6 address comes from the CNI's IPv6 range: \(podStatus)")
        // A pod with one interface starts from the VM template (its NIC slot takes the TAP).
        let vmms = Self.commandLines(containing: containerd.directory + "/kasa-state").filter { $0.contains("kasa-vmm") }
        #expect(vmms.count == 1 && vmms.allSatisfy { $0.contains("--restore") && $0.contains("--net fd=3") },
                "the pod's VM is restored from the template with the pod's TAP: \(vmms)")

        var containers: [String] = []
        for (name, readonly) in [("app", false), ("readonly", true)] {
            let script = "echo \(name) started; trap 'exit 0' TERM; \(ContainerdTests.idleLoop)"
            let created = try Self.call(containerd, "CreateContainer", [
                "pod_sandbox_id": podID, "sandbox_config": pod,
                "config": Self.containerConfig(name: name, image: busybox, script: script, readonlyRoot: readonly,
                                               runtimeDefaultSeccomp: readonly)])
            let id = try #require(created["container_id"] as? String, "\(created) \(context())")
            do {
                try Self.call(containerd, "StartContainer", ["container_id": id])
            } catch {
                Issue.record("StartContainer \(name): \(error)\n\(context())")
            }
            containers.append(id)
        }
        let running = try Self.call(containerd, "ContainerStatus", ["container_id": containers[0]])
        #expect((running["status"] as? [String: Any])?["state"] as? Int == 1, "app is RUNNING: \(running)")

        let resolv = try Self.exec(containerd, containers[0], "cat /etc/resolv.conf")
        #expect(resolv.stdout.contains("nameserver 10.96.0.10") && resolv.stdout.contains("search default.svc.cluster.local")
                && resolv.stdout.contains("options ndots:5"), "the pod's dns_config: \(resolv.stdout.debugDescription)")
        let hostname = try Self.exec(containerd, containers[0], "hostname; cat /etc/hostname")
        #expect(hostname.stdout == "kasa-pod\nkasa-pod\n", "the pod's hostname: \(hostname.stdout.debugDescription)")
        let writable = try Self.exec(containerd, containers[0], "touch /new-file && echo ok; touch /dev/shm/x && echo shm")
        #expect(writable.stdout == "ok\nshm\n", "app's root and /dev/shm are writable: \(writable.stdout.debugDescription)")
        // The readonly container asked for the runtime's default seccomp profile (containerd's,
        // with its argument conditions): the agent applies it in the VM, to execs as well.
        let filtered = try Self.exec(containerd, containers[1], "grep Seccomp: /proc/self/status; grep Seccomp: /proc/1/status")
        #expect(filtered.stdout == "Seccomp:\t2\nSeccomp:\t2\n", "the default profile filters the container: \(filtered.stdout.debugDescription)")
        let unfiltered = try Self.exec(containerd, containers[0], "grep Seccomp: /proc/self/status")
        #expect(unfiltered.stdout == "Seccomp:\t0\n", "no profile asked, none applied: \(unfiltered.stdout.debugDescription)")
        let denied = try Self.exec(containerd, containers[1], "unshare -U true 2>&1; echo status=$?")
        #expect(denied.stdout.contains("Operation not permitted") && denied.stdout.hasSuffix("status=1\n"),
                "the default profile refuses unshare: \(denied.stdout.debugDescription)")
        let readonly = try Self.exec(containerd, containers[1], "touch /new-file 2>&1; echo status=$?")
        #expect(readonly.stdout.contains("Read-only file system") && readonly.stdout.hasSuffix("status=1\n"),
                "a readonly_rootfs container cannot write its root: \(readonly.stdout.debugDescription)")
        // A pod's containers share the VM's network namespace: 127.0.0.1 joins them.
        let served = try Self.exec(containerd, containers[0],
                                   "mkdir -p /tmp/www && echo hello-from-app > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www")
        #expect(served.status == 0, "httpd in app: \(served.stdout)")
        let fetched = try Self.exec(containerd, containers[1], "wget -q -O - http://127.0.0.1:8080/index.html 2>&1")
        #expect(fetched.stdout == "hello-from-app\n", "one container reaches another over 127.0.0.1: \(fetched.stdout.debugDescription)")
        try Self.expectPodNetworking(containerd, app: containers[0], podIP: ip, podIP6: ip6)
        let failing = try Self.exec(containerd, containers[1], "exit 3")
        #expect(failing.status == 3, "ExecSync reports the exit code")

        // CRI's log file (what `kubectl logs` reads): "TIME stdout F LINE".
        let logged = ContainerdTests.waitFor(30) {
            ((try? String(contentsOfFile: logs + "/app.log", encoding: .utf8)) ?? "").contains(" stdout F app started")
        }
        #expect(logged, "app's output in its CRI log: \((try? String(contentsOfFile: logs + "/app.log", encoding: .utf8)) ?? "none")")

        for id in containers {
            try Self.call(containerd, "StopContainer", ["container_id": id, "timeout": 10])
            let stopped = try Self.call(containerd, "ContainerStatus", ["container_id": id])
            #expect((stopped["status"] as? [String: Any])?["state"] as? Int == 2, "EXITED after StopContainer: \(stopped)")
            try Self.call(containerd, "RemoveContainer", ["container_id": id])
        }
        try Self.call(containerd, "StopPodSandbox", ["pod_sandbox_id": podID])
        try Self.call(containerd, "RemovePodSandbox", ["pod_sandbox_id": podID])
        try Self.expectNothingLeft(containerd)
    }

    /// A pod without a DNS config gets the node's resolv.conf, as with runc.
    @Test(.timeLimit(.minutes(20)))
    func aPodWithoutDNSConfigGetsTheNodesResolvConf() throws {
        let containerd = try Containerd(cri: .init(subnet: "10.88.8.0/24"))
        let busybox = "docker.io/kasa/busybox:test"
        try Self.importImage(containerd, name: containerd.cri!.sandboxImage,
                             command: ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"])
        try Self.importImage(containerd, name: busybox, command: ["sh"])
        let pod = Self.podConfig(name: "plain-pod", directory: containerd.directory, dns: nil)
        let podID: String
        do {
            let ran = try Self.call(containerd, "RunPodSandbox", ["config": pod, "runtime_handler": "kata"])
            podID = try #require(ran["pod_sandbox_id"] as? String, "\(ran)")
        } catch {
            Issue.record("RunPodSandbox: \(error)\ncontainerd log:\n\(containerd.tail)")
            return
        }
        let created = try Self.call(containerd, "CreateContainer", [
            "pod_sandbox_id": podID, "sandbox_config": pod,
            "config": Self.containerConfig(name: "app", image: busybox, script: "\(ContainerdTests.idleLoop)")])
        let id = try #require(created["container_id"] as? String)
        try Self.call(containerd, "StartContainer", ["container_id": id])
        let resolv = try Self.exec(containerd, id, "cat /etc/resolv.conf")
        let node = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        #expect(resolv.stdout == node, "the node's resolv.conf: \(resolv.stdout.debugDescription) vs \(node.debugDescription)")
        // RemovePodSandbox alone stops and removes what is left in the pod.
        try Self.call(containerd, "StopPodSandbox", ["pod_sandbox_id": podID])
        try Self.call(containerd, "RemovePodSandbox", ["pod_sandbox_id": podID])
        try Self.expectNothingLeft(containerd)
    }

    /// The shim SIGKILLed while RunPodSandbox sets the pod up (its VM already started, the
    /// pod's TAP and tc filters made or in the making): RunPodSandbox fails, and what
    /// containerd's CRI plugin does on that failure (the shim's `delete`, CNI's DEL, the
    /// pod's network namespace removed), with kasa-vmm's watch on its parent, leaves no
    /// process, sandbox, state or namespace behind.
    @Test(.timeLimit(.minutes(20)))
    func aShimKilledWhileAPodStartsLeavesNothing() throws {
        let containerd = try Containerd(cri: .init(subnet: "10.88.9.0/24"))
        try Self.importImage(containerd, name: containerd.cri!.sandboxImage,
                             command: ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"])
        let pod = Self.podConfig(name: "doomed-pod", directory: containerd.directory, dns: nil)
        // RunPodSandbox in the background, through the same client as `call`.
        let request = String(decoding: try JSONSerialization.data(withJSONObject: ["config": pod, "runtime_handler": "kata"]), as: UTF8.self)
        let running = Process()
        running.executableURL = URL(filePath: "/usr/bin/python3")
        running.arguments = [Self.client, containerd.socket, "RunPodSandbox", request]
        running.environment = ["CRI_TIMEOUT": "480"]
        let errors = Pipe()
        running.standardOutput = FileHandle.nullDevice
        running.standardError = errors
        try running.run()
        defer { if running.isRunning { running.terminate() } }
        let vmmStarted = ContainerdTests.waitFor(240) { !ContainerdTests.vmmProcesses(containerd).isEmpty }
        try #require(vmmStarted, "kasa-vmm never started: \(containerd.tail)")
        let shims = ContainerdTests.shimProcesses(containerd)
        try #require(shims.count == 1, "one shim: \(shims)")
        kill(shims[0], SIGKILL)
        let returned = ContainerdTests.waitFor(300) { !running.isRunning }
        #expect(returned, "RunPodSandbox did not return after its shim died")
        if returned {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(running.terminationStatus != 0, "RunPodSandbox must fail: \(message)")
        }
        #expect(ContainerdTests.waitFor(60) { ContainerdTests.vmmProcesses(containerd).isEmpty },
                "kasa-vmm outlived its shim: \(ContainerdTests.vmmProcesses(containerd))")
        let sandboxes = try ContainerdTests.ctr(containerd, ["-n", "k8s.io", "containers", "ls", "-q"])
        #expect(sandboxes.status == 0 && sandboxes.stdout.isEmpty, "containerd kept the failed sandbox: \(sandboxes.stdout) \(sandboxes.stderr)")
        try Self.expectNothingLeft(containerd)
    }

    /// The pod's network reaches its VM: the guest NIC has the pod veth's MAC and the pod's
    /// IP; a server in the VM answers at the pod IP from the node (containerd's namespace,
    /// where the CNI bridge is); the VM fetches from a server on the bridge's gateway; the
    /// veth is joined to the VM's TAP by tc. All of it inside the test's namespaces.
    static func expectPodNetworking(_ containerd: Containerd, app: String, podIP: String, podIP6: String? = nil) throws {
        let node = "/proc/\(containerd.process.processIdentifier)/ns/net"
        let netnsDirectory = containerd.directory + "/state/io.containerd.grpc.v1.cri/netns"
        let podNamespace = netnsDirectory + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: netnsDirectory).first))
        func inNamespace(_ path: String, _ arguments: [String], timeout: Double = 60) throws -> ContainerdTests.Outcome {
            try ContainerdTests.run("/usr/bin/nsenter", ["--net=" + path, "--"] + arguments, timeout: timeout, unblockingSignals: true)
        }
        // (Not /sys/class/net: sysfs shows the namespace of whoever mounted it, the host's.)
        let link = try inNamespace(podNamespace, ["ip", "-o", "link", "show", "eth0"]).stdout
        let veth = link.split(separator: " ").drop { $0 != "link/ether" }.dropFirst().first.map { String($0) + "\n" } ?? ""
        let guestMAC = try exec(containerd, app, "cat /sys/class/net/eth0/address").stdout
        #expect(!veth.isEmpty && guestMAC == veth, "the guest NIC has the veth's MAC: guest \(guestMAC.debugDescription), veth \(link)")
        let address = try exec(containerd, app, "ip -4 -o addr show dev eth0").stdout
        #expect(address.contains("inet \(podIP)/24"), "the guest has the pod's IP: \(address)")
        let routes = try exec(containerd, app, "ip route").stdout
        #expect(routes.contains("default via 10.88."), "the pod's default route: \(routes)")
        let filters = try inNamespace(podNamespace, ["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout
        #expect(filters.contains("Redirect to device tap0_kata"), "the veth is joined to the VM's TAP: \(filters)")

        // Node -> VM: httpd in the app container, fetched at the pod IP from the bridge's side.
        let served = try exec(containerd, app, "mkdir -p /tmp/pub && echo served-from-the-vm > /tmp/pub/index.html && httpd -p 8081 -h /tmp/pub")
        #expect(served.status == 0)
        // (No wget -T: Debian's busybox 1.35 wget crashes with it; the run's timeout bounds it.)
        let fetched = try inNamespace(node, ["busybox", "wget", "-q", "-O", "-", "http://\(podIP):8081/index.html"])
        #expect(fetched.stdout == "served-from-the-vm\n", "the node reaches the VM at the pod IP: \(fetched.stdout) \(fetched.stderr)")
        if let podIP6 {
            // Dual stack: the guest has the pod's IPv6 address and routes, and answers at it.
            let address6 = try exec(containerd, app, "ip -6 -o addr show dev eth0").stdout
            #expect(address6.contains("inet6 \(podIP6)/64") && !address6.contains("\(podIP6)/64 scope global tentative"),
                    "the guest has the pod's IPv6 address: \(address6)")
            let routes6 = try exec(containerd, app, "ip -6 route").stdout
            #expect(routes6.contains("default via fd00:88:7::1 dev eth0"), "the pod's IPv6 default route: \(routes6)")
            let fetched6 = try inNamespace(node, ["busybox", "wget", "-q", "-O", "-", "http://[\(podIP6)]:8081/index.html"])
            #expect(fetched6.stdout == "served-from-the-vm\n", "the node reaches the VM at the pod's IPv6 address: \(fetched6.stdout) \(fetched6.stderr)")
        }

        // VM -> node: a server on the gateway address (the bridge, in containerd's namespace).
        let gateway = try #require(routes.split(separator: "\n").first { $0.hasPrefix("default via ") }?.split(separator: " ").dropFirst(2).first)
        let site = containerd.directory + "/node-site"
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: true)
        try "served-from-the-node\n".write(toFile: site + "/host.txt", atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(filePath: "/usr/bin/nsenter")
        server.arguments = ["--net=" + node, "--", "busybox", "httpd", "-f", "-p", "\(gateway):8090", "-h", site]
        try server.run()
        // SIGKILL: the server inherits this process's blocked SIGTERM.
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        usleep(300_000)
        let fromVM = try exec(containerd, app, "wget -q -O - http://\(gateway):8090/host.txt 2>&1")
        #expect(fromVM.stdout == "served-from-the-node\n", "the VM reaches the node through the pod network: \(fromVM.stdout)")
    }

    /// No shim or VMM process, no Kasa sandbox state, no pod network namespace.
    static func expectNothingLeft(_ containerd: Containerd) throws {
        #expect(ContainerdTests.waitFor(20) { containerd.leftovers().isEmpty },
                "shim or VMM processes left: \(containerd.leftovers())")
        let stateDirectory = containerd.directory + "/kasa-state"
        let states = try ContainerdTests.entries(of: stateDirectory)
        #expect(states.isEmpty, "sandbox state left: \(states)")
        // netns_mounts_under_state_dir: the pods' namespaces are bind mounts in here.
        let netnsDirectory = containerd.directory + "/state/io.containerd.grpc.v1.cri/netns"
        let namespaces = try FileManager.default.contentsOfDirectory(atPath: netnsDirectory)
        #expect(namespaces.isEmpty, "pod network namespaces left: \(namespaces)")
        let mounts = try ContainerdTests.mounts(under: netnsDirectory)
        #expect(mounts.isEmpty, "a pod network namespace is still mounted: \(mounts)")
    }
}

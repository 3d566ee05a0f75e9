import Foundation
import Testing

/// virtio-net through kasa-vmm: bad `--net` specifications, then the real guest kernel on
/// a TAP inside a network namespace the test creates (all traffic stays in it): the guest
/// configures eth0 (the test initrd's init, given `kasa.net=`), answers ping and serves a
/// TCP connection from the namespace, with the MAC it was given.
@Suite(.serialized) struct NetworkTests {
    static let kasaVMM = BadInputTests.executable

    struct Outcome {
        let status: Int32
        let output: String
    }

    /// Runs a command to its end within `timeout` seconds; stdout and stderr together.
    /// Through a Python one-liner that unblocks every signal first: a child of this test
    /// process inherits its blocked-signal mask (SIGALRM among them), and busybox ping,
    /// which times its probes with alarm(2), then waits forever for a reply.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], timeout: Double = 30) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/python3")
        process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                             tool] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return Outcome(status: process.terminationStatus, output: text)
    }

    @Test(arguments: [
        ("tap", "'tap' is not key=value"),
        ("mac=02:00:00:00:00:01", "tap=NAME, fd=N or unplugged is required"),
        ("unplugged,tap=x", "give one of tap=, fd= and unplugged"),
        ("tap=t0,fd=5", "give one of tap=, fd= and unplugged"),
        ("fd=1", "fd=1 is not an inherited descriptor"),
        ("tap=t0,mac=02:00:00:00:00", "is not a MAC address"),
        ("tap=t0,mtu=40", "mtu=40 is not within 68...65535"),
        ("tap=t0,speed=10", "unknown key 'speed'"),
        ("fd=77", "descriptor 77 is not open"),
    ])
    func badNetworkSpecificationsAreOneLineErrors(spec: String, message: String) throws {
        let kernel = try RealKernelTests.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh")
        let outcome = try Self.run(Self.kasaVMM, ["--kernel", kernel, "--net", spec, "--no-stdin", "--console", "none"])
        #expect(outcome.status != 0)
        #expect(outcome.output.contains(message), "\(spec): \(outcome.output)")
        #expect(outcome.output.split(separator: "\n").count == 1, "\(spec): \(outcome.output)")
    }

    /// The whole path: guest driver, device, TAP, the host's stack in the test's namespace.
    @Test(.timeLimit(.minutes(20)))
    func theGuestAnswersPingAndTCPOnItsTap() throws {
        let kernel = try RealKernelTests.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh")
        let initrd = try RealKernelTests.artifact("KASA_TEST_INITRD", script: "images/build-test-initrd.sh")
        let namespace = "kasa-net-\(UUID().uuidString.prefix(6))"
        try #require(try Self.run("/usr/bin/ip", ["netns", "add", namespace]).status == 0, "ip netns add")
        defer { _ = try? Self.run("/usr/bin/ip", ["netns", "del", namespace]) }
        func inNamespace(_ arguments: [String], timeout: Double = 30) throws -> Outcome {
            try Self.run("/usr/bin/ip", ["netns", "exec", namespace] + arguments, timeout: timeout)
        }
        try inNamespace(["ip", "link", "set", "lo", "up"])

        let console = FileManager.default.temporaryDirectory.appending(path: "\(namespace)-console.log").path
        FileManager.default.createFile(atPath: console, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: console) }
        let mac = "02:42:0a:00:02:02"
        let vmm = Process()
        vmm.executableURL = URL(filePath: "/usr/bin/ip")
        vmm.arguments = ["netns", "exec", namespace, Self.kasaVMM, "--kernel", kernel, "--initrd", initrd, "--memory", "256",
                         "--cmdline", "console=ttyS0 reboot=k panic=-1 kasa.net=10.0.2.2/24",
                         "--net", "tap=kasatap0,mac=\(mac),mtu=1500", "--no-stdin", "--console", console]
        vmm.standardInput = FileHandle.nullDevice
        let vmmErrors = Pipe()
        vmm.standardError = vmmErrors
        try vmm.run()
        defer { if vmm.isRunning { vmm.terminate() } }
        let text = { (try? String(contentsOfFile: console, encoding: .utf8)) ?? "" }

        // kasa-vmm creates the TAP when it starts; the host side gets its address then.
        var tapUp = false
        for _ in 0..<100 where !tapUp {
            tapUp = try inNamespace(["ip", "addr", "add", "10.0.2.1/24", "dev", "kasatap0"]).status == 0
            if !tapUp { usleep(100_000) }
        }
        try #require(tapUp, "kasa-vmm did not create kasatap0")
        try inNamespace(["ip", "link", "set", "kasatap0", "up"])
        let deadline = Date().addingTimeInterval(400)
        while !text().contains("KASA-NET-UP") && vmm.isRunning && Date() < deadline { usleep(200_000) }
        try #require(text().contains("KASA-NET-UP"), "the guest did not configure eth0; console tail:\n\(text().suffix(3000))")
        #expect(text().contains("KASA-NET-MAC \(mac)"), "the guest NIC has the MAC it was given")

        let ping = try inNamespace(["busybox", "ping", "-c", "3", "-W", "10", "10.0.2.2"], timeout: 60)
        #expect(ping.output.contains("3 packets received"), "ping: \(ping.output)")
        // The guest starts its TCP server after KASA-NET-UP: on a loaded host the first
        // connection can come before it listens ("Connection refused"), so try until then.
        var tcp = try inNamespace(["busybox", "nc", "-w", "30", "10.0.2.2", "8080"], timeout: 60)
        while tcp.output.contains("Connection refused") && vmm.isRunning && Date() < deadline {
            usleep(500_000)
            tcp = try inNamespace(["busybox", "nc", "-w", "30", "10.0.2.2", "8080"], timeout: 60)
        }
        #expect(tcp.output == "hello from the guest over tcp\n", "TCP from the guest: \(tcp.output)")
        let neighbours = try inNamespace(["ip", "neigh", "show", "dev", "kasatap0"])
        #expect(neighbours.output.contains("10.0.2.2 lladdr \(mac)"), "the host saw the guest's MAC: \(neighbours.output)")

        // The guest resets after serving: kasa-vmm exits 0 and its TAP goes with it.
        while vmm.isRunning && Date() < deadline { usleep(100_000) }
        // Its stderr is read only once it has exited: a running kasa-vmm keeps the pipe open,
        // and reading it then would wait for ever (it did, in a failing run).
        let still = vmm.isRunning
        #expect(!still && vmm.terminationStatus == 0,
                "kasa-vmm: \(still ? "still running after the deadline" : String(decoding: vmmErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        let links = try inNamespace(["ip", "-o", "link"])
        #expect(!links.output.contains("kasatap0"), "the TAP outlived kasa-vmm: \(links.output)")
    }
}

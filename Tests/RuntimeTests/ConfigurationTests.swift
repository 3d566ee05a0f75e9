@testable import Runtime
import Foundation
import Testing

@Suite struct ConfigurationTests {
    @Test func readsTheDocumentedSubsetAndReportsUnknownKeys() throws {
        let loaded = try ConfigurationLoader.parse("""
            [hypervisor.kasa]
            path = "/opt/kasa/kasa-vmm"
            kernel = "/opt/kasa/vmlinux"
            initrd = "/opt/kasa/initrd"
            kernel_params = "loglevel=3"
            default_vcpus = 2
            default_memory = 1024
            block_device_driver = "virtio-blk"

            [hypervisor.qemu]
            path = "/usr/bin/qemu-system-x86_64"

            [agent.kata]
            dial_timeout = 90
            debug_console_enabled = true

            [runtime]
            enable_debug = true
            state_dir = "/tmp/kasa-state"
            image_cache_dir = "/tmp/kasa-images"
            """, path: "/etc/test.toml")
        let configuration = loaded.configuration
        #expect(configuration.hypervisor.path == "/opt/kasa/kasa-vmm")
        #expect(configuration.hypervisor.kernel == "/opt/kasa/vmlinux")
        #expect(configuration.hypervisor.initrd == "/opt/kasa/initrd")
        #expect(configuration.hypervisor.image == "", "a file that names an initrd boots it, not the default image")
        #expect(configuration.hypervisor.kernelParams == "loglevel=3")
        #expect(configuration.hypervisor.defaultVCPUs == 2)
        #expect(configuration.hypervisor.defaultMemoryMiB == 1024)
        #expect(configuration.agent.dialTimeoutSeconds == 90)
        #expect(configuration.effectiveDialTimeout(onPVMHost: true) == 90)
        #expect(configuration.agent.debugConsoleEnabled)
        #expect(configuration.runtime.enableDebug)
        #expect(configuration.runtime.stateDirectory == "/tmp/kasa-state")
        #expect(configuration.runtime.imageCacheDirectory == "/tmp/kasa-images")
        #expect(configuration.sourcePath == "/etc/test.toml")
        #expect(loaded.warnings == [
            "/etc/test.toml:8: [hypervisor.kasa] block_device_driver: unknown key, ignored",
            "/etc/test.toml:11: [hypervisor.qemu] path: Kasa does not use the [hypervisor.qemu] table, ignored",
        ])
    }

    @Test func anImageReplacesTheDefaultBootMedium() throws {
        let loaded = try ConfigurationLoader.parse("[hypervisor.kasa]\nimage = \"/opt/agent.img\"\n", path: "/c.toml")
        #expect(loaded.configuration.hypervisor.image == "/opt/agent.img")
        #expect(loaded.configuration.hypervisor.initrd == "")
        #expect(RuntimeConfiguration.defaults.hypervisor.image == "/usr/share/kasa/kata-agent.img")
        #expect(RuntimeConfiguration.defaults.hypervisor.initrd == "")
    }

    @Test func disableSeccompTurnsKasaVMMsFiltersOff() throws {
        let plain = try ConfigurationLoader.parse("[hypervisor.kasa]\nvmm_user = \"root\"\n", path: "/c.toml")
        let directory = try RuntimeTestSupport.temporaryDirectory("kasa-jail-args")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let jail = directory + "/jail"
        #expect(try MicroVMBackend.Settings(configuration: plain.configuration, sandboxID: "s")
            .confinementArguments(jail: jail, writable: ["/t"])
            == ["--jail", jail, "--jail-path-writable", "/t"],
                "jailed and filtered unless turned off")
        #expect(HostFile.isDirectory(jail))
        let off = try ConfigurationLoader.parse("[hypervisor.kasa]\ndisable_seccomp = true\nenable_jail = false\n", path: "/c.toml")
        #expect(off.configuration.hypervisor.disableSeccomp && !off.configuration.hypervisor.enableJail)
        #expect(try MicroVMBackend.Settings(configuration: off.configuration, sandboxID: "s").confinementArguments(jail: jail)
            == ["--seccomp", "off"])
        #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[hypervisor.kasa]\ndisable_seccomp = \"yes\"\n", path: "/c.toml") }
    }

    /// `vmm_user`: a jailed kasa-vmm is told to become that user (`--user UID:GID`, its
    /// primary group); root, or no jail, keeps it root; a user the host lacks stops the
    /// sandbox with how to make one, and `kata-runtime check` says the same.
    @Test func vmmUserNamesWhoAJailedKasaVMMBecomes() throws {
        #expect(try ConfigurationLoader.parse("", path: "/c.toml").configuration.hypervisor.vmmUser == "kasa-vmm")
        let directory = try RuntimeTestSupport.temporaryDirectory("kasa-user-args")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let jail = directory + "/jail"
        func settings(_ text: String) throws -> MicroVMBackend.Settings {
            MicroVMBackend.Settings(configuration: try ConfigurationLoader.parse(text, path: "/c.toml").configuration, sandboxID: "s")
        }
        // nobody and nogroup: Debian's, 65534 both.
        let nobody = try settings("[hypervisor.kasa]\nvmm_user = \"nobody\"\n")
        #expect(try nobody.confinementArguments(jail: jail) == ["--jail", jail, "--user", "65534:65534"])
        #expect(try settings("[hypervisor.kasa]\nvmm_user = \"root\"\n").confinementArguments(jail: jail) == ["--jail", jail])
        let unjailed = try settings("[hypervisor.kasa]\nvmm_user = \"nobody\"\nenable_jail = false\n")
        #expect(try unjailed.confinementArguments(jail: jail) == [] && unjailed.jailedUser() == nil)
        let missing = try settings("[hypervisor.kasa]\nvmm_user = \"kasa-no-such-user\"\n")
        #expect { try missing.confinementArguments(jail: jail) } throws: { error in
            "\(error)".contains("no such user on this host") && "\(error)".contains("useradd")
        }
        for bad in ["\"\"", "\"-x\"", "\"a/b\"", "\"a b\"", "7"] {
            #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[hypervisor.kasa]\nvmm_user = \(bad)\n", path: "/c.toml") }
        }
        var configuration = try ConfigurationLoader.parse("[hypervisor.kasa]\nvmm_user = \"nobody\"\n", path: "/c.toml").configuration
        #expect(HostCheck.vmmConfinementCheck(configuration, status: "Seccomp:\t0\n").detail.contains("runs as nobody (uid 65534, gid 65534"))
        configuration.hypervisor.vmmUser = "kasa-no-such-user"
        #expect(HostCheck.vmmConfinementCheck(configuration, status: "Seccomp:\t0\n").verdict == .fail)
    }

    @Test func theCheckSaysWhatConfinesKasaVMM() throws {
        let plain = try ConfigurationLoader.parse("", path: "/c.toml").configuration
        #expect(HostCheck.vmmConfinementCheck(plain, status: "Name:\tx\nSeccomp:\t0\n").verdict == .pass)
        let noSeccomp = HostCheck.vmmConfinementCheck(plain, status: "Name:\tx\n")
        #expect(noSeccomp.verdict == .fail && noSeccomp.fix != nil)
        var off = plain
        off.hypervisor.disableSeccomp = true
        #expect(HostCheck.vmmConfinementCheck(off, status: "").detail.hasPrefix("off (disable_seccomp = true)"))
    }

    /// `sandbox_cgroup_only` (Kata's key, on by default): each kasa-vmm in a cgroup of its
    /// own where the host has cgroup v2; the check says where, or why not.
    @Test func sandboxCgroupsAreOnByDefaultAndTheCheckSaysWhere() throws {
        let plain = try ConfigurationLoader.parse("", path: "/c.toml").configuration
        #expect(plain.runtime.sandboxCgroupOnly)
        let writable = FileManager.default.temporaryDirectory.path
        #expect(HostCheck.cgroupCheck(plain, hierarchy: writable).verdict == .pass)
        #expect(HostCheck.cgroupCheck(plain, hierarchy: writable).detail.contains(writable + "/kasa/<sandbox>-<tag>"))
        let none = HostCheck.cgroupCheck(plain, hierarchy: nil)
        #expect(none.verdict == .note && none.detail.contains("no cgroup v2 hierarchy"))
        let off = try ConfigurationLoader.parse("[runtime]\nsandbox_cgroup_only = false\n", path: "/c.toml").configuration
        #expect(!off.runtime.sandboxCgroupOnly)
        #expect(MicroVMBackend.Settings(configuration: off, sandboxID: "s").cgroupHierarchy == nil)
        #expect(HostCheck.cgroupCheck(off, hierarchy: writable).detail.hasPrefix("off (sandbox_cgroup_only = false)"))
        #expect(throws: RuntimeError.self) { try ConfigurationLoader.parse("[runtime]\nsandbox_cgroup_only = 1\n", path: "/c.toml") }
    }

    @Test func theDialTimeoutDefaultDependsOnTheHost() {
        #expect(RuntimeConfiguration.defaults.effectiveDialTimeout(onPVMHost: false) == 45)
        #expect(RuntimeConfiguration.defaults.effectiveDialTimeout(onPVMHost: true) == 450)
    }

    @Test(arguments: [
        ("[hypervisor.kasa]\ndefault_vcpus = \"two\"\n", "/c.toml:2: [hypervisor.kasa] default_vcpus: expected an integer, found a string (\"two\")"),
        ("[hypervisor.kasa]\ndefault_memory = 1\n", "/c.toml:2: [hypervisor.kasa] default_memory: 1 is out of range (64...1048576)"),
        // kasa-vmm's MP table describes at most 32 processors: more is refused here, not at boot.
        ("[hypervisor.kasa]\ndefault_vcpus = 33\n", "/c.toml:2: [hypervisor.kasa] default_vcpus: 33 is out of range (1...32)"),
        ("[agent.kata]\ndebug_console_enabled = 1\n", "/c.toml:2: [agent.kata] debug_console_enabled: expected true or false, found an integer (1)"),
        ("[hypervisor.kasa]\nkernel = \"vmlinux\"\n", "/c.toml: [hypervisor.kasa] kernel must be an absolute path, not \"vmlinux\""),
        ("[runtime\n", "/c.toml: line 1: expected ']' after the key runtime"),
        ("[hypervisor.kasa]\nimage = \"/a.img\"\ninitrd = \"/b.cpio\"\n", "/c.toml: [hypervisor.kasa] sets both image and initrd: the guest boots one of them"),
        ("[hypervisor.kasa]\nimage = \"\"\n", "/c.toml: [hypervisor.kasa] needs image (or initrd): what the guest boots"),
        ("[hypervisor.kasa]\nimage = \"agent.img\"\n", "/c.toml: [hypervisor.kasa] image must be an absolute path, not \"agent.img\""),
    ])
    func badFilesAreErrors(text: String, message: String) {
        #expect(throws: RuntimeError.configuration(message)) { try ConfigurationLoader.parse(text, path: "/c.toml") }
    }

    /// CRI's sandbox IDs are 64 hex digits: under a long state_dir their sockets' paths
    /// would not fit in a Unix socket address (kasa-vmm refused to start every CRI pod).
    @Test func aSandboxDirectoryKeepsItsSocketsWithinTheUnixPathLimit() {
        let criID = String(repeating: "e9", count: 32)
        var runtime = RuntimeConfiguration.defaults.runtime
        #expect(runtime.sandboxDirectory(for: criID) == "/run/kasa/sandboxes/" + criID, "the default state_dir keeps the ID")
        runtime.stateDirectory = "/tmp/kasa-containerd-D13970/kasa-state"
        let directory = runtime.sandboxDirectory(for: criID)
        #expect((directory + "/vsock.sock_4294967295").utf8.count <= 107, "\(directory)")
        #expect(directory == runtime.sandboxDirectory(for: criID), "every process finds the same directory")
        #expect(directory != runtime.sandboxDirectory(for: String(repeating: "f0", count: 32)))
        #expect(runtime.socketPathProblem == nil)
        runtime.stateDirectory = "/" + String(repeating: "x", count: 70)
        #expect(runtime.socketPathProblem?.contains("state_dir") == true)
        #expect(throws: RuntimeError.self) {
            try ConfigurationLoader.parse("[runtime]\nstate_dir = \"\(runtime.stateDirectory)\"\n", path: "/c.toml")
        }
    }

    @Test func theFileIsFoundByFlagThenEnvironment() throws {
        let directory = try RuntimeTestSupport.temporaryDirectory("kasa-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = directory + "/a.toml", second = directory + "/b.toml"
        try "[hypervisor.kasa]\ndefault_vcpus = 3\n".write(toFile: first, atomically: true, encoding: .utf8)
        try "[hypervisor.kasa]\ndefault_vcpus = 4\n".write(toFile: second, atomically: true, encoding: .utf8)
        let viaFlag = try ConfigurationLoader.load(explicitPath: first, environment: ["KATA_CONF_FILE": second])
        #expect(viaFlag.configuration.hypervisor.defaultVCPUs == 3)
        let viaEnvironment = try ConfigurationLoader.load(explicitPath: nil, environment: ["KATA_CONF_FILE": second])
        #expect(viaEnvironment.configuration.hypervisor.defaultVCPUs == 4)
        #expect(throws: RuntimeError.configuration("cannot read configuration file \(directory)/none.toml: No such file or directory")) {
            try ConfigurationLoader.load(explicitPath: directory + "/none.toml", environment: [:])
        }
    }
}

/// What the host asks of the guest on its kernel command line.
@Suite struct GuestCommandLineTests {
    @Test func theAgentIsToldToGiveUpOnAContainerBeforeTheHostDoes() {
        var settings = MicroVMBackend.Settings(configuration: .defaults, sandboxID: "s1")
        #expect(!MicroVMBackend(settings: settings).kernelCommandLine.contains("agent.container_init_timeout"))
        for callTimeout in [false, true].map(RuntimeConfiguration.agentCallTimeout(onPVMHost:)) {
            let seconds = MicroVMBackend.Settings.containerInitTimeout(forCallTimeout: callTimeout)
            #expect(seconds > 0 && Double(seconds) < callTimeout - 5, "\(seconds) s for a \(callTimeout) s call")
            settings.containerInitTimeout = seconds
            let words = MicroVMBackend(settings: settings).kernelCommandLine.split(separator: " ")
            #expect(words.contains("agent.container_init_timeout=\(seconds)"), "\(words)")
        }
    }
}

@Suite struct DriveSerialTests {
    /// virtio-blk's GET_ID carries 20 bytes: the serial must fit, and two containers of a
    /// pod must never share one (the agent finds each rootfs disk by it).
    @Test func aContainersRootfsDriveSerialFitsAndIsItsOwn() {
        let first = MicroVMBackend.driveSerial(forContainer: "pod-sandbox")
        let second = MicroVMBackend.driveSerial(forContainer: "app")
        #expect(first.utf8.count == 20 && first.hasPrefix("kasa-"), "\(first)")
        #expect(first != second)
        #expect(first == MicroVMBackend.driveSerial(forContainer: "pod-sandbox"), "the same id gives the same serial")
        #expect(MicroVMBackend.rootfsMount(serial: first).source == "/dev/disk/by-id/virtio-" + first)
    }
}

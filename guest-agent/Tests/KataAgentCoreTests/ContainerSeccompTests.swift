import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// The container's OCI linux.seccomp profile is applied (CRI sends containerd's default
/// profile this way): a denied call fails with the profile's errno, argument conditions
/// pick the calls they name, execs are filtered like the container's first process, and
/// a profile that cannot be built fails the create with the reason.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ContainerSeccompTests {
    typealias S = ContainerTestSupport

    init() throws { try S.requireContainerSupport() }

    /// Everything allowed except the rules given.
    static func profile(_ rules: [SeccompProfile.Rule]) -> SeccompProfile {
        SeccompProfile(defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                       syscalls: rules)
    }

    static let noMkdir = profile([.init(names: ["mkdir", "mkdirat", "no_such_syscall"], action: "SCMP_ACT_ERRNO", errnoRet: 1)])

    func run(_ script: String, _ configure: (inout ContainerLaunchSpec) -> Void) throws -> S.Output {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        return try S.run(S.spec(rootfs, script, configure: configure))
    }

    @Test(arguments: [false, true])
    func aDeniedCallFailsWithTheProfilesErrno(noNewPrivileges: Bool) throws {
        let script = "mkdir /tmp/made 2>&1; echo status=$?; touch /tmp/file && echo touched"
        let filtered = try run(script) {
            $0.seccomp = Self.noMkdir
            $0.noNewPrivileges = noNewPrivileges
        }
        #expect(filtered.stdout.contains("Operation not permitted") && filtered.stdout.contains("status=1\ntouched\n"),
                "mkdir denied (EPERM), the rest allowed: \(filtered)")
        let status = try run("grep Seccomp: /proc/self/status") { $0.seccomp = Self.noMkdir }
        #expect(status.stdout == "Seccomp:\t2\n", "the workload runs in filter mode: \(status)")
        let plain = try run(script) { _ in }
        #expect(plain.stdout == "status=0\ntouched\n", "without a profile nothing is filtered: \(plain)")
    }

    /// kill(pid, SIGUSR1) denied with EACCES by an argument condition, other signals not.
    @Test func argumentConditionsPickTheCallsTheyName() throws {
        let profile = Self.profile([.init(names: ["kill"], action: "SCMP_ACT_ERRNO", errnoRet: UInt32(EACCES),
                                          args: [.init(index: 1, value: UInt64(SIGUSR1), op: "SCMP_CMP_EQ")])])
        let output = try run("sleep 30 & kill -USR1 $! 2>&1; echo usr1=$?; kill -TERM $! && echo term=$?") { $0.seccomp = profile }
        #expect(output.stdout.contains("Permission denied") && output.stdout.contains("usr1=1\nterm=0\n"), "\(output)")
    }

    /// A process exec'd into a running container is held to the container's profile.
    @Test func anExecIsFilteredByTheContainersProfile() throws {
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        var spec = S.spec(rootfs, "")
        spec.args = ["/bin/sleep", "30"]
        spec.seccomp = Self.noMkdir
        let null = open("/dev/null", O_RDWR)
        defer { close(null) }
        let container = try ContainerLauncher.launch(spec: spec, agentExecutable: S.agentExecutable!,
                                                     stdio: .pipes(stdin: null, stdout: null, stderr: null))
        try container.start()
        defer {
            kill(container.pid, SIGKILL)
            _ = S.wait(container.pid, timeout: .seconds(10))
        }
        let process = try OCISpec.Process.parse(Array(#"{"args": ["/bin/sh", "-c", "mkdir /tmp/x 2>&1; echo status=$?"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}"#.utf8))
        let exec = try process.launchSpec(joining: spec, pid: container.pid)
        #expect(exec.seccomp == Self.noMkdir)
        let output = try S.run(exec)
        #expect(output.stdout.contains("Operation not permitted") && output.stdout.hasSuffix("status=1\n"), "\(output)")
    }

    @Test(arguments: [
        (SeccompProfile(defaultAction: "SCMP_ACT_FLY"), "defaultAction: unknown or unsupported action \"SCMP_ACT_FLY\""),
        (profile([.init(names: ["mkdir"], action: "SCMP_ACT_ERRNO", args: [.init(index: 0, value: 0, op: "SCMP_CMP_ABOUT")])]),
         "syscalls[0]: unknown operator \"SCMP_CMP_ABOUT\""),
        (profile([.init(names: ["mkdir"], action: "SCMP_ACT_ERRNO", args: [.init(index: 6, value: 0, op: "SCMP_CMP_EQ")])]),
         "syscalls[0]: argument index 6 (a syscall has 6)"),
        (SeccompProfile(defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_VAX"]), "architecture \"SCMP_ARCH_VAX\": not valid here"),
        (SeccompProfile(defaultAction: "SCMP_ACT_ALLOW", flags: ["SECCOMP_FILTER_FLAG_FAST"]), "flag \"SECCOMP_FILTER_FLAG_FAST\": not valid here"),
    ])
    func aProfileThatCannotBeBuiltFailsTheCreate(profile: SeccompProfile, message: String) throws {
        #expect(throws: ContainerLaunchError.setupFailed("seccomp: " + message)) {
            _ = try run("true") { $0.seccomp = profile }
        }
    }

    /// The profile arrives in the OCI spec's linux.seccomp, as containerd writes it.
    @Test func theOCISpecCarriesTheProfileToTheLaunch() throws {
        let json = #"""
        {"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
         "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64"],
                               "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                               "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}}}
        """#
        let spec = try OCISpec.parse(Array(json.utf8))
        let launch = try spec.launchSpec(rootfs: "/rootfs")
        let profile = try #require(launch.seccomp)
        #expect(profile.defaultAction == "SCMP_ACT_ERRNO" && profile.defaultErrnoRet == 38)
        #expect(profile.syscalls?.count == 2 && profile.syscalls?[1].args?.first?.value == 8)
        #expect(profile.flags == ["SECCOMP_FILTER_FLAG_LOG"])
    }
}

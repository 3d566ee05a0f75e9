import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// New containers through a standby container init (made before the container was known):
/// the container must be exactly what a freshly spawned init makes, the standby must be
/// replaced after use, a dead one must not fail a launch, and stopping leaves nothing.
/// Needs root and namespaces like ContainerLauncherTests; every wait is bounded.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ContainerInitStandbyTests {
    typealias S = ContainerTestSupport

    init() throws { try S.requireContainerSupport() }

    func readyStandby(replaceAfter: Double = 10) throws -> ContainerInitStandby {
        _ = S.subreaper
        let standby = ContainerInitStandby(agentExecutable: S.agentExecutable!, readyTimeout: .seconds(30),
                                           replaceAfter: replaceAfter) { _ in }
        guard standby.start(waitingUpTo: 30) else {
            standby.stop()
            throw S.Failure(description: "no standby container init within 30 s")
        }
        return standby
    }

    func waitUntilReady(_ standby: ContainerInitStandby) -> Bool {
        for _ in 0..<300 where !standby.isReady { usleep(100_000) }
        return standby.isReady
    }

    /// Live (not zombie) standby processes whose parent is `parent`.
    func liveStandbys(childrenOf parent: Int32) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.filter { pid in
            guard let command = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
                  String(decoding: command, as: UTF8.self).contains("\(ContainerLauncher.initArgument)\0\(ContainerLauncher.standbyArgument)"),
                  let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
            let fields = Dictionary(status.split(separator: "\n").compactMap { line -> (String, String)? in
                let parts = line.split(separator: ":", maxSplits: 1)
                return parts.count == 2 ? (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)) : nil
            }, uniquingKeysWith: { a, _ in a })
            return fields["PPid"] == String(parent) && !(fields["State"] ?? "").hasPrefix("Z")
        }
    }

    @Test func aContainerFromAStandbyIsWhatAFreshInitMakes() throws {
        let standby = try readyStandby()
        defer { standby.stop() }
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let script = "echo $$; hostname; head -1 /proc/self/status; id -u; pwd; echo err >&2; exit 3"
        let output = try S.run(S.spec(rootfs, script) { $0.uid = 1000; $0.gid = 1000; $0.cwd = "/tmp" }, standby: standby)
        #expect(standby.takenCount == 1, "the launch did not use the standby")
        #expect(output.stdout == "1\nkasa-test\nName:\thead\n1000\n/tmp\n", "\(output)")
        #expect(output.stderr == "err\n")
        #expect(output.status == 3)
        #expect(S.hostMounts(under: rootfs.path).isEmpty, "mounts leaked onto the host")
    }

    @Test func aReadOnlyRootWorksThroughAStandby() throws {
        let standby = try readyStandby()
        defer { standby.stop() }
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let output = try S.run(S.spec(rootfs, "touch /x 2>/dev/null && echo writable || echo read-only") { $0.readonlyRootfs = true },
                               standby: standby)
        #expect(standby.takenCount == 1)
        #expect(output.stdout == "read-only\n", "\(output)")
    }

    /// A standby's child moves itself into the container's cgroup (a fresh init joins it
    /// before it forks): the container process must be in it all the same.
    @Test func aContainerFromAStandbyIsInItsCgroup() throws {
        let (cgroup, root) = try S.makeTestCgroup("kasa-standby-test")
        defer { rmdir(cgroup) }
        let standby = try readyStandby()
        defer { standby.stop() }
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let output = try S.run(S.spec(rootfs, "grep ^0:: /proc/self/cgroup") { $0.cgroupPath = cgroup }, standby: standby)
        #expect(standby.takenCount == 1)
        #expect(output.stdout == "0::" + String(cgroup.dropFirst(root.count)) + "\n", "\(output)")
    }

    @Test func theNextStandbyIsMadeAfterOneIsTaken() throws {
        let standby = try readyStandby()
        defer { standby.stop() }
        let first = standby.readyPID
        for round in 1...2 {
            let rootfs = try S.Rootfs()
            defer { rootfs.remove() }
            #expect(waitUntilReady(standby), "no standby again within 30 s (round \(round))")
            let output = try S.run(S.spec(rootfs, "echo round \(round)"), standby: standby)
            #expect(output.stdout == "round \(round)\n", "\(output)")
        }
        #expect(standby.takenCount == 2)
        #expect(waitUntilReady(standby))
        #expect(standby.readyPID != first)
    }

    /// Making the next standby waits for the container that took one to start, so that it
    /// does not compete with that container's set-up.
    @Test func theNextStandbyWaitsForAContainerToStart() throws {
        let standby = try readyStandby(replaceAfter: 60)
        defer { standby.stop() }
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let launch = try ContainerLauncher.launch(spec: S.spec(rootfs, "exit 0"), agentExecutable: S.agentExecutable!,
                                                  stdio: .pipes(stdin: null, stdout: null, stderr: null), standby: standby)
        #expect(standby.takenCount == 1)
        usleep(1_000_000)
        #expect(!standby.isReady, "a standby was made before the container started")
        try launch.start()
        #expect(waitUntilReady(standby), "no standby within 30 s of the container's start")
        _ = S.wait(launch.pid, timeout: .seconds(10))
    }

    @Test func aKilledStandbyFallsBackToAFreshInit() throws {
        let standby = try readyStandby()
        defer { standby.stop() }
        let pid = try #require(standby.readyPID)
        kill(pid, SIGKILL)
        let rootfs = try S.Rootfs()
        defer { rootfs.remove() }
        let output = try S.run(S.spec(rootfs, "echo still works"), standby: standby)
        #expect(standby.takenCount == 1, "the dead standby was not the one tried")
        #expect(output.stdout == "still works\n", "\(output)")
        #expect(output.status == 0)
    }

    @Test func stopLeavesNoStandbyRunning() throws {
        let standby = try readyStandby()
        let pid = try #require(standby.readyPID)
        #expect(liveStandbys(childrenOf: getpid()).contains(pid), "the standby could not be seen in /proc")
        #expect(!liveStandbys(childrenOf: pid).isEmpty, "the standby's child could not be seen in /proc")
        standby.stop()
        // The child dies with its parent (PR_SET_PDEATHSIG); give the kernel a moment.
        var left: [Int32] = []
        for _ in 0..<50 {
            left = liveStandbys(childrenOf: getpid()) + liveStandbys(childrenOf: pid) + liveStandbys(childrenOf: 1)
            if left.isEmpty { break }
            usleep(100_000)
        }
        #expect(left.isEmpty, "standby processes left: \(left)")
    }
}

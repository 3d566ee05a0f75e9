import AgentProtocol
import Foundation
@testable import Runtime
import Testing

/// The Runtime's run flow against kata-agent as a host process (HostAgentBackend): the
/// same container, stream, exit-status and teardown code as with a VM, in seconds.
/// Root is needed (the agent makes namespaces and mounts); without it the tests fail
/// with that reason rather than pass unseen.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct ContainerRunTests {
    final class Fixture {
        let agent: String
        let rootfs: String
        let stateDirectory: String

        init() throws {
            guard getuid() == 0 else { throw RuntimeTestSupport.Missing(description: "the runtime's host-agent tests need root (namespaces, mounts)") }
            agent = try RuntimeTestSupport.agentExecutable()
            rootfs = try RuntimeTestSupport.busyboxRootfs()
            stateDirectory = try RuntimeTestSupport.temporaryDirectory("kasa-runtime-state")
        }

        deinit {
            try? FileManager.default.removeItem(atPath: rootfs)
            try? FileManager.default.removeItem(atPath: stateDirectory)
        }

        func makeRun(_ command: [String], id: String = "c\(UUID().uuidString.prefix(6).lowercased())", terminal: Bool = false,
                     rootfs: String? = nil) throws -> (ContainerRun, HostAgentBackend) {
            let backend = HostAgentBackend(agentExecutable: agent, directory: stateDirectory + "/" + id)
            let workload = try WorkloadSpec.forRootfs(rootfs ?? self.rootfs, command: command, terminal: terminal, hostname: id)
            return (ContainerRun(sandboxID: id, backend: backend, workload: workload, dialTimeout: 20, callTimeout: 20), backend)
        }

        /// A bundle directory whose rootfs is the fixture's; the test writes its config.json
        /// and removes the directory.
        func makeBundle() throws -> String {
            let bundle = try RuntimeTestSupport.temporaryDirectory("kasa-bundle")
            try FileManager.default.createSymbolicLink(atPath: bundle + "/rootfs", withDestinationPath: rootfs)
            return bundle
        }

        /// A run of `bundle` as written, in a sandbox named `prefix` and a random suffix.
        func makeBundleRun(_ bundle: String, idPrefix prefix: String) throws -> (ContainerRun, HostAgentBackend) {
            let id = prefix + UUID().uuidString.prefix(4).lowercased()
            let backend = HostAgentBackend(agentExecutable: agent, directory: stateDirectory + "/" + id)
            let workload = try WorkloadSpec.forBundle(bundle, command: [], terminal: false)
            return (ContainerRun(sandboxID: id, backend: backend, workload: workload, dialTimeout: 20, callTimeout: 20), backend)
        }

        /// Nothing of the run is left: no agent process, no mount, no state directory.
        func expectNothingLeft(_ backend: HostAgentBackend, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(RuntimeTestSupport.processes(mentioning: backend.directory).isEmpty,
                    "processes left: \(RuntimeTestSupport.processes(mentioning: backend.directory))", sourceLocation: sourceLocation)
            #expect(HostMounts.mountPoints(under: backend.directory).isEmpty, "mounts left", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: backend.directory), "state directory left", sourceLocation: sourceLocation)
        }
    }

    @Test func streamsOutputAndReturnsTheExitStatus() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "echo hello; echo oops >&2; cat /etc/kasa-test; exit 7"])
        let stdio = CapturedStdio()
        let status = try run.run(stdio: stdio.stdio)
        let (stdout, stderr) = stdio.finish()
        #expect(status == 7)
        #expect(stdout == "hello\ndata\n")
        #expect(stderr == "oops\n")
        fixture.expectNothingLeft(backend)
    }

    @Test func stdinIsPipedThroughToEOF() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "while read line; do echo \"got $line\"; done; echo end"])
        let stdio = CapturedStdio(stdin: "one\ntwo\n")
        let status = try run.run(stdio: stdio.stdio)
        #expect(status == 0)
        #expect(stdio.finish().stdout == "got one\ngot two\nend\n")
        fixture.expectNothingLeft(backend)
    }

    @Test func terminalWorkloadsGetAPty() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "test -t 0 && test -t 1 && echo terminal; exit 3"], terminal: true)
        let stdio = CapturedStdio()
        let status = try run.run(stdio: stdio.stdio)
        let output = stdio.finish().stdout
        #expect(status == 3)
        #expect(output.contains("terminal"), "output: \(output.debugDescription)")
        fixture.expectNothingLeft(backend)
    }

    @Test func theRootfsIsWritableButTheSourceIsNotTouched() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "echo new > /etc/kasa-test && rm /bin/true && cat /etc/kasa-test"])
        let stdio = CapturedStdio()
        #expect(try run.run(stdio: stdio.stdio) == 0)
        #expect(stdio.finish().stdout == "new\n")
        #expect(try String(contentsOfFile: fixture.rootfs + "/etc/kasa-test", encoding: .utf8) == "data\n")
        #expect(FileManager.default.fileExists(atPath: fixture.rootfs + "/bin/true"))
        fixture.expectNothingLeft(backend)
    }

    @Test func aMissingCommandIs127AndLeavesNothing() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/no/such/program"])
        let stdio = CapturedStdio()
        let error = #expect(throws: RuntimeError.self) { try run.run(stdio: stdio.stdio) }
        _ = stdio.finish()
        #expect(error?.exitStatus == 127, "\(String(describing: error))")
        #expect(error?.description.contains("/no/such/program") == true, "\(String(describing: error))")
        fixture.expectNothingLeft(backend)
    }

    @Test func aMissingRootfsIsBadInputAndStartsNothing() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/true"], rootfs: "/nonexistent/rootfs")
        let error = #expect(throws: RuntimeError.self) { try run.run(stdio: CapturedStdio().stdio) }
        #expect(error == .invalidInput("rootfs /nonexistent/rootfs does not exist"))
        fixture.expectNothingLeft(backend)
    }

    @Test func anInterruptIsPassedToTheWorkload() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "trap 'echo caught; exit 42' TERM; echo ready; while true; do sleep 0.1; done"])
        let stdio = CapturedStdio()
        let started = Date()
        Thread.detachNewThread {
            // The workload prints "ready" once its trap is set.
            guard stdio.waitForOutput("ready\n") else { return }
            run.interrupt(signal: SIGTERM, grace: 20)
        }
        let status = try run.run(stdio: stdio.stdio)
        #expect(status == 42)
        #expect(stdio.finish().stdout == "ready\ncaught\n")
        #expect(Date().timeIntervalSince(started) < 15)
        fixture.expectNothingLeft(backend)
    }

    @Test func aWorkloadIgnoringTheInterruptIsTornDown() throws {
        let fixture = try Fixture()
        // The marker finds the workload in /proc afterwards: it must not outlive the run.
        let marker = "ignoring-\(UInt32.random(in: 0...UInt32.max))"
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "trap '' INT; echo ready; while true; do sleep 0.1; done; : \(marker)"])
        let stdio = CapturedStdio()
        Thread.detachNewThread {
            // Interrupting before the trap is set would end the workload, not test the teardown.
            guard stdio.waitForOutput("ready\n") else { return }
            run.interrupt(signal: SIGINT, grace: 0.5)
        }
        let error = #expect(throws: RuntimeError.self) { try run.run(stdio: stdio.stdio) }
        _ = stdio.finish()
        #expect(error == .interrupted(signal: SIGINT))
        #expect(error?.exitStatus == 130)
        // The host agent takes its container down with it (SIGKILL after a moment: a
        // container's PID 1 without a handler never sees the forwarded signal).
        let deadline = Date().addingTimeInterval(10)
        while (!HostMounts.mountPoints(under: backend.directory).isEmpty || !RuntimeTestSupport.processes(mentioning: marker).isEmpty)
                && Date() < deadline { usleep(50_000) }
        #expect(HostMounts.mountPoints(under: backend.directory).isEmpty)
        #expect(RuntimeTestSupport.processes(mentioning: marker).isEmpty, "the workload outlived the run")
        #expect(!FileManager.default.fileExists(atPath: backend.directory))
    }

    @Test func theBackendDyingEndsTheRunWithItsReason() throws {
        let fixture = try Fixture()
        let (run, backend) = try fixture.makeRun(["/bin/sh", "-c", "echo ready; sleep 3"])
        let stdio = CapturedStdio()
        Thread.detachNewThread {
            // Once the workload runs, the agent dies under it.
            guard stdio.waitForOutput("ready\n") else { return }
            for line in RuntimeTestSupport.processes(mentioning: backend.socketPath) {
                if let pid = Int32(line.prefix { $0 != ":" }) { kill(pid, SIGKILL) }
            }
        }
        let error = #expect(throws: RuntimeError.self) { try run.run(stdio: stdio.stdio) }
        _ = stdio.finish()
        #expect(error?.description.contains("kata-agent killed by signal 9") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: backend.directory))
    }
}

extension ContainerRunTests {
    /// An OCI bundle (config.json + rootfs) runs with its own process, env and cwd.
    @Test func aBundleRunsWithItsOwnSpec() throws {
        let fixture = try Fixture()
        let bundle = try fixture.makeBundle()
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try """
            {"ociVersion": "1.1.0",
             "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/etc",
                         "args": ["/bin/sh", "-c", "echo $GREETING from $(pwd); exit 5"], "env": ["PATH=/bin", "GREETING=hi"]},
             "root": {"path": "rootfs"},
             "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}
            """.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        let (run, backend) = try fixture.makeBundleRun(bundle, idPrefix: "bundle")
        let stdio = CapturedStdio()
        #expect(try run.run(stdio: stdio.stdio) == 5)
        #expect(stdio.finish().stdout == "hi from /etc\n")
        fixture.expectNothingLeft(backend)
    }
}

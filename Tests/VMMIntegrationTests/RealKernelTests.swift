import Foundation
import Testing
import VMM

/// The guest kernel from images/ under kasa-vmm, with the busybox test initrd: the whole
/// path from VMM to guest user space. On kvm_pvm the guest kernel is emulated, so this
/// takes about a minute here (well under a second on hardware KVM); the watchdog bounds it.
@Suite struct RealKernelTests {
    static let packageRoot = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The artifact named by `variable`, else the cached build that `script --print-path` reports.
    static func artifact(_ variable: String, script: String) throws -> String {
        if let path = ProcessInfo.processInfo.environment[variable], !path.isEmpty { return path }
        let scriptPath = packageRoot.appending(path: script).path
        do {
            let output = try GuestBuilder.run("/bin/bash", [scriptPath, "--print-path"])
            return output.split(separator: "\n").last.map(String.init) ?? ""
        } catch {
            throw NotBuilt(what: script)
        }
    }

    struct NotBuilt: Error, CustomStringConvertible {
        let what: String
        var description: String { "\(what) has not been built: run `bash \(what)` (scripts/test.sh does) or set the path variable" }
    }

    @Test(.timeLimit(.minutes(10)))
    func guestKernelRunsInitFromTheInitrd() throws {
        let kernel = try RealKernelTests.artifact("KASA_TEST_KERNEL", script: "images/build-kernel.sh")
        let initrd = try RealKernelTests.artifact("KASA_TEST_INITRD", script: "images/build-test-initrd.sh")
        let run = try GuestRun.boot(kernel, memoryMiB: 256, initrd: initrd,
                                    commandLine: "console=ttyS0 reboot=k panic=-1", timeout: 400)
        let tail = String(run.console.suffix(3000))
        #expect(run.vm.boot.entryProtocol.rawValue == "pvh")
        #expect(run.console.contains("Run /init as init process"), "the kernel did not reach /init (\(run.reason)); console tail:\n\(tail)")
        #expect(run.console.contains("KASA-INIT-OK"), "init did not run in guest user space; console tail:\n\(tail)")
        #expect(run.console.contains("KASA-INIT-DONE"), "console tail:\n\(tail)")
        #expect(run.reason == .reset, "the guest did not reboot cleanly: \(run.reason); console tail:\n\(tail)")
    }
}

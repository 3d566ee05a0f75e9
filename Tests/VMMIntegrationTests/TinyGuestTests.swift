import Foundation
import KVM
import Testing
import VMM

/// Real KVM: tiny guests assembled from Tests/guests, each bounded by a watchdog.
@Suite(.serialized) struct TinyGuestTests {
    @Test func pvhEntryReceivesStartInfoAndCommandLine() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("pvh32"), commandLine: "hello pvh")
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.vm.boot?.entryProtocol.rawValue == "pvh")
        #expect(run.console.contains("PVH32 OK\nstart_info magic ok\ncmdline=hello pvh"))
        #expect(run.console.contains("e820 entries=3"))
    }

    @Test func sixtyFourBitEntryReceivesTheZeroPage() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("long64"), commandLine: "hello long mode")
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.vm.boot?.entryProtocol.rawValue == "elf64")
        #expect(run.console.contains("LONG64 OK\nzero page ok\ncmdline=hello long mode"))
    }

    @Test func bzImageBootsThroughTheSixtyFourBitProtocol() throws {
        let run = try GuestRun.boot(try GuestBuilder.flat("bzimage"))
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.vm.boot?.entryProtocol.rawValue == "bzImage")
        #expect(run.console == "BZIMAGE OK\nsetup header ok\n")
    }

    @Test func tripleFaultEndsTheVM() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("triplefault"))
        #expect(run.reason == .tripleFault)
        #expect(run.console == "T")
    }

    @Test func breakpointAndFwaitWorkOnEveryHost() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("breakpoint"))
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.console == "breakpoint handled\nafter int3\nafter fwait\n")
        if KVMSystem.isPVMHost {
            // kvm_pvm cannot emulate either instruction: the VMM must have completed both.
            #expect(run.vm.emulationAssists[0xCC] == 1)
            #expect(run.vm.emulationAssists[0x9B] == 1)
        }
    }

    @Test(arguments: [2, 4])
    func applicationProcessorsStartThroughINITAndSIPI(vcpus: Int) throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("smp"), vcpus: vcpus, timeout: 120)
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.console.hasSuffix("application processors up: \(vcpus - 1)\n"), "console: \(run.console)")
        #expect(run.console.filter { $0 == "A" }.count == vcpus - 1)
    }

    @Test func consoleInputReachesTheGuest() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("echo")) { vm, capture in
            while !capture.text.contains("ready") { usleep(1000) }
            vm.sendConsoleInput(Array("ping\n".utf8))
            while !capture.text.contains("echo: ping\n") { usleep(1000) }
            vm.sendConsoleInput(Array("bye\n".utf8))
        }
        #expect(run.reason == .reset, "console: \(run.console)")
        #expect(run.console == "ready\necho: ping\necho: bye\n")
    }

    @Test func stopEndsARunningVM() throws {
        // echo waits for input forever: only stop() can end it.
        let run = try GuestRun.boot(try GuestBuilder.elf("echo"), timeout: 2)
        #expect(run.reason == .stopped)
    }

    @Test func largeMemoryIsSplitAroundTheMMIOHole() throws {
        let run = try GuestRun.boot(try GuestBuilder.elf("long64"), memoryMiB: 4096 + 512)
        #expect(run.reason == .reset)
        #expect(run.vm.memory.regions.count == 2)
        #expect(run.console.contains("e820 entries=4"))
    }
}

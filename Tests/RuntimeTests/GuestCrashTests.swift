import Foundation
@testable import Runtime
import Testing

/// A sandbox whose guest kernel panicked is reported with the kernel's reason, taken from
/// the console the guest wrote: hostile text, so bounded and cut to printable ASCII.
@Suite struct GuestCrashTests {
    /// The end of a console (6.1) after the agent — PID 1 — died.
    static let initDied = """
        [   41.202115] virtio_blk virtio1: [vdb] 4096 512-byte logical blocks (2.10 MB/2.00 MiB)
        [   58.771002] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000005
        [   58.771990] CPU: 0 PID: 1 Comm: kata-agent Not tainted 6.1.0 #1

        """

    @Test func theReasonIsTheKernelsPanicLine() {
        #expect(GuestCrash.panicReason(inConsole: Self.initDied) == "Attempted to kill init! exitcode=0x00000005")
    }

    @Test func aConsoleWithoutAPanicNamesNone() {
        #expect(GuestCrash.panicReason(inConsole: "[ 1.0] Linux version 6.1\nreboot: Restarting system\n") == nil)
        #expect(GuestCrash.panicReason(inConsole: "") == nil)
    }

    /// Several panics in one console (a log that was not cut): the last one is this stop's.
    @Test func theLastPanicCounts() {
        let text = "Kernel panic - not syncing: first\nmore\r\nKernel panic - not syncing: Out of memory: compulsory panic_on_oom is enabled\r\n"
        #expect(GuestCrash.panicReason(inConsole: text) == "Out of memory: compulsory panic_on_oom is enabled")
    }

    /// What a hostile guest prints there cannot forge log lines or flood the host's log.
    @Test func hostileReasonsAreCutToPrintableAndBounded() {
        let escape = "\u{1b}[2J\u{7}"
        let long = String(repeating: "A", count: 10_000)
        let reason = GuestCrash.panicReason(inConsole: "Kernel panic - not syncing: \(escape)x\u{0}y é \(long)\nforged line\n")
        #expect(reason?.hasPrefix("[2Jxy ") == true, "\(String(describing: reason?.prefix(20)))")
        #expect(reason?.count == GuestCrash.reasonLimit)
        #expect(reason?.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f } == true)
        #expect(GuestCrash.panicReason(inConsole: "Kernel panic - not syncing: \u{1}  \n") == "no reason given")
    }

    @Test func describeReadsTheConsoleFile() throws {
        let directory = try RuntimeTestSupport.temporaryDirectory("kasa-console")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/console.log"
        // The console's start falls outside the 16 KiB read: only the end matters.
        try (String(repeating: "boot noise\n", count: 4000) + Self.initDied).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(GuestCrash.describe(consolePath: path) == "the guest kernel panicked: Attempted to kill init! exitcode=0x00000005")
        #expect(GuestCrash.describe(consolePath: directory + "/absent.log") == nil)
    }
}

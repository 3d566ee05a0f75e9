import Foundation
import LegacyDevices
import VMM
import HostOS

/// Boots a VM with its console captured, stopping it after `timeout` so no test can hang.
struct GuestRun {
    let reason: VMExitReason
    let console: String
    let vm: MicroVM

    final class Capture: @unchecked Sendable {
        private let lock = Lock()
        private var bytes: [UInt8] = []
        func append(_ more: [UInt8]) { lock.withLock { bytes += more } }
        var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }
    }

    static func boot(_ kernel: String, memoryMiB: UInt64 = 16, vcpus: Int = 1, initrd: String? = nil,
                     commandLine: String = "test", timeout: Double = 60,
                     whileRunning: (@Sendable (MicroVM, Capture) -> Void)? = nil) throws -> GuestRun {
        let capture = Capture()
        let configuration = VMConfiguration(kernelPath: kernel, initrdPath: initrd, commandLine: commandLine,
                                            memoryMiB: memoryMiB, vcpuCount: vcpus,
                                            console: .handler { capture.append($0) })
        let vm = try MicroVM(configuration: configuration)
        let watchdog = DispatchWorkItem { vm.stop() }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        if let whileRunning {
            DispatchQueue.global().async { whileRunning(vm, capture) }
        }
        let reason = try vm.run()
        watchdog.cancel()
        return GuestRun(reason: reason, console: capture.text, vm: vm)
    }
}

import HostOS
import KVM
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// A sampling profiler of the guest: every `interval` a sampler thread kicks each vCPU out
/// of KVM_RUN, and the vCPU thread records where the guest was (RIP, and whether in the
/// kernel or in user space) before it enters the guest again. On kvm_pvm, where guest
/// kernel code is emulated, this shows which kernel paths the seconds go to; the output
/// is symbolized with the guest kernel's symbols (bench/guest-profile).
///
/// Output, rewritten every second while the VM runs (runtimes end kasa-vmm with SIGKILL) and
/// when it ends: one line per distinct sample, most frequent first,
/// `COUNT kernel|user RIP` (RIP in hex); user-space samples are one line, `COUNT user 0`
/// (their addresses mean nothing without the process).
final class GuestProfiler: @unchecked Sendable {
    let interval: UInt64  // nanoseconds
    let outputPath: String
    private let lock = Lock()
    private var kernelSamples: [UInt64: Int] = [:]  // guarded by lock
    private var userSamples = 0  // guarded by lock
    private var requested: [Bool]  // per vCPU, guarded by lock
    /// Distinct kernel addresses kept at most; later new ones are counted under 0.
    static let maximumAddresses = 1 << 20

    /// The profile's file, opened at set-up (a VMM running as its own user could not
    /// create it in the runtime's directory later); -1 with `openError` when it could not be.
    private let output: Int32
    private let openError: String?

    init(outputPath: String, intervalMicroseconds: Int, vcpuCount: Int) {
        self.outputPath = outputPath
        output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        openError = output < 0 ? String(cString: strerror(errno)) : nil
        interval = UInt64(max(100, intervalMicroseconds)) * 1000
        requested = Array(repeating: false, count: vcpuCount)
    }

    deinit {
        if output >= 0 { close(output) }
    }

    /// Asks vCPU `index` for a sample at its next exit.
    func request(_ index: Int) {
        lock.withLock { requested[index] = true }
    }

    /// Called by the vCPU thread on every interrupted exit: takes a sample if one was asked for.
    func sampleIfRequested(_ vcpu: VCPU) {
        let index = Int(vcpu.id)
        let wanted = lock.withLock { () -> Bool in
            defer { requested[index] = false }
            return requested[index]
        }
        guard wanted, let registers = try? vcpu.registers(), let special = try? vcpu.specialRegisters() else { return }
        let user = special.cs.selector & 3 == 3
        lock.withLock {
            if user {
                userSamples += 1
            } else if kernelSamples[registers.rip] != nil || kernelSamples.count < GuestProfiler.maximumAddresses {
                kernelSamples[registers.rip, default: 0] += 1
            } else {
                kernelSamples[0, default: 0] += 1
            }
        }
    }

    /// The sampler: until `isStopped`, every interval, requests a sample of each vCPU and
    /// kicks it; the profile is rewritten every second.
    func run(vcpus: [VCPU], threads: [HostThread], isStopped: () -> Bool) {
        var delay = timespec(tv_sec: Int(interval / 1_000_000_000), tv_nsec: Int(interval % 1_000_000_000))
        var lastWrite = EventLoop.now()
        while !isStopped() {
            nanosleep(&delay, nil)
            if EventLoop.now() - lastWrite >= 1_000_000_000 {
                _ = write()
                lastWrite = EventLoop.now()
            }
            for (index, (vcpu, thread)) in zip(vcpus, threads).enumerated() {
                request(index)
                vcpu.requestExit()
                thread.kick()
            }
        }
    }

    /// Writes the profile (0600) over what was written before; a failure is reported, never
    /// fatal to the VM's result.
    func write() -> String? {
        let lines: [String] = lock.withLock {
            var rows = kernelSamples.map { (count: $0.value, line: "\($0.value) kernel \(String($0.key, radix: 16))") }
            if userSamples > 0 { rows.append((userSamples, "\(userSamples) user 0")) }
            return rows.sorted { $0.count > $1.count }.map(\.line)
        }
        let text = Array((lines.joined(separator: "\n") + "\n").utf8)
        guard output >= 0 else { return "cannot write the profile \(outputPath): \(openError ?? "not opened")" }
        let failure = { [outputPath] in "cannot write the profile \(outputPath): \(String(cString: strerror(errno)))" }
        guard ftruncate(output, 0) == 0 else { return failure() }
        var done = 0
        while done < text.count {
            let count = text.withUnsafeBytes { pwrite(output, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return failure() }
            done += count
        }
        return nil
    }
}

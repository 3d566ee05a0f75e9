import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Throughput of the virtio device models alone: the real `VirtioMMIOTransport` and
/// devices, driven by `VirtioMockDriver` in plain guest memory. No KVM, no guest kernel.
@main
struct DeviceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kasa-device-bench",
        abstract: "Measures virtio-blk and virtio-vsock throughput through the device model (no KVM, no guest).")

    @Option(help: "Seconds per timed run.")
    var seconds: Double = 1.5

    @Option(help: "Timed runs per configuration (the table shows the median).")
    var runs: Int = 5

    @Option(help: "Directory for the virtio-blk backing file.")
    var directory: String = "/tmp"

    @Option(name: .customLong("file-mib"), help: "Size of the virtio-blk backing file in MiB.")
    var fileMiB: Int = 256

    @Option(help: "Only these devices (blk, vsock).")
    var only: [String] = []

    mutating func validate() throws {
        guard seconds > 0, runs > 0, fileMiB >= 1 else { throw ValidationError("--seconds, --runs and --file-mib must be positive") }
        for device in only where device != "blk" && device != "vsock" { throw ValidationError("unknown device '\(device)'") }
    }

    func run() throws {
        let wants = { (device: String) in only.isEmpty || only.contains(device) }
        say("kasa-device-bench: \(utcDate()); \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores (\(cpuModel())), \(memoryTotalGiB()) GiB, Linux \(kernelRelease())")
        #if DEBUG
        say("WARNING: debug build; measure with `swift build -c release --product kasa-device-bench`")
        #endif
        say("No guest kernel and no KVM: the real VirtioMMIOTransport and device models, driven by the mock driver")
        say("in plain memory on this thread (pure device-model cost, no vCPU exits, no guest driver).")
        say("load average at start: \(loadAverage())")
        var rows: [ResultRow] = []
        let warmUp = min(0.3, seconds / 2)
        if wants("blk") {
            let fileSize = UInt64(fileMiB) << 20
            say("blk: filling a \(fileMiB) MiB file in \(directory) (\(fileSystemType(directory)))...")
            let block = try BlockBench(directory: directory, fileSize: fileSize)
            say("blk: the file is in the host page cache (just written): reads do not reach the disk, writes")
            say("     stop in the page cache (no flush requests; the file is fsync'ed between runs, untimed).")
            for write in [false, true] {
                for size in [4 << 10, 64 << 10] {
                    for depth in [1, 32] {
                        let row = try block.measure(write: write, size: size, depth: depth, seconds: seconds, runs: runs, warmUp: warmUp)
                        say("  \(row.device) \(row.test): \(format(median(row.mebibytesPerSecond), decimals: 0)) MiB/s")
                        rows.append(row)
                    }
                }
            }
        }
        if wants("vsock") {
            let vsock = try VsockBench()
            defer { vsock.finish() }
            for (direction, size) in [(VsockBench.Direction.hostToGuest, 4 << 10), (.hostToGuest, 64 << 10),
                                      (.guestToHost, 4 << 10), (.guestToHost, 64 << 10)] {
                let row = try vsock.measure(direction, packetSize: size, seconds: seconds, runs: runs, warmUp: warmUp)
                say("  \(row.device) \(row.test): \(format(median(row.mebibytesPerSecond), decimals: 0)) MiB/s")
                rows.append(row)
            }
        }
        say("load average at end: \(loadAverage())")
        say()
        say(renderTable(rows, runs: runs))
    }
}

import CLinux
import Foundation
import GuestMemory
import HostOS
import Virtio
import VirtioMockDriver

/// The guest-facing surface of kasa-vmm's devices, driven by bytes: each input is a script
/// a hostile guest could play — virtio-mmio register reads and writes in any order, raw
/// writes anywhere in guest memory (rings and descriptor tables included), well-formed and
/// malformed chains, notifications, resets — against one device on its transport, with
/// the host side of the device (a TAP's frames, the vsock socket) moving as well. Nothing
/// may trap, hang or touch memory outside the guest's; errors and NEEDS_RESET are fine.
///
/// Driven by libFuzzer (`kasa-device-fuzz`, built by fuzz/run-device-fuzz.sh) and, over
/// the committed corpus, by the unit tests (DeviceFuzzingTests).
public enum DeviceFuzzer {
    public enum Target: String, CaseIterable, Sendable {
        case block, net, vsock, entropy
        /// virtio-fs: FUSE requests against a fresh directory per input.
        case fileSystem = "fs"
    }

    /// Guest memory: three queue areas of 256 KiB each (rings, then MockDriver's buffers)
    /// from 64 KiB, and room past them. Small, so that each input maps and touches little.
    static let memoryMiB: UInt64 = 1
    static let queueBase: UInt64 = 0x10000
    static let queueStride: UInt64 = 0x40000

    public static func check(_ target: Target, _ input: [UInt8]) {
        var script = Script(input)
        let memory: GuestMemory
        do { memory = try MockDriver.makeMemory(megabytes: memoryMiB) } catch { fatalError("guest memory: \(error)") }
        let harness: Harness
        do {
            harness = try Harness(target, memory: memory)
        } catch {
            fatalError("setting up \(target): \(error)")
        }
        defer { harness.finish() }
        let registers = RegisterDriver(transport: harness.transport)
        var drivers: [MockDriver] = []
        // The features the script offers back: bit i of the first byte keeps feature group i.
        let choice = script.byte()
        var features = VirtioFeature.version1
        if choice & 1 != 0 { features |= VirtioFeature.ringEventIndex }
        if choice & 2 != 0 { features |= VirtioFeature.ringIndirectDescriptors }
        if choice & 4 != 0 { features |= harness.device.deviceFeatures & 0xFFFF_FFFF }
        if choice & 8 != 0 { features = UInt64(script.u32()) | UInt64(script.u32()) << 32 }
        var steps = 0
        while !script.isEmpty && steps < 256 {
            steps += 1
            switch script.byte() % 10 {
            case 0:
                let size = UInt16(1) << (1 + script.byte() % 8)
                let count = harness.device.queueMaximumSizes.count
                let bases = (0..<count).map { queueBase + UInt64($0) * queueStride }
                registers.initialize(features: features, queueSize: UInt32(size), bases: bases)
                drivers = bases.map { MockDriver(memory: memory, size: size, base: $0) }
            case 1:
                registers.write(UInt64(script.byte()) * 4 % 0x200, script.u32())
            case 2:
                _ = registers.read(UInt64(script.byte()) * 4 % 0x200)
            case 3:
                let address = UInt64(script.u32() & 0xF_FFFF)
                let bytes = script.bytes(Int(script.byte()))
                try? memory.write(bytes: bytes, at: GuestAddress(address))
            case 4:
                guard let driver = script.pick(drivers) else { continue }
                var buffers: [MockDriver.Buffer] = []
                for _ in 0..<(1 + Int(script.byte() % 4)) {
                    let kind = script.byte()
                    let length = Int(script.u16() % 4097)
                    buffers.append(kind & 1 == 0 ? .readable(script.bytes(length) + [UInt8](repeating: 0, count: max(0, length - script.lastCount)))
                                                 : .writable(length))
                }
                _ = try? driver.add(buffers)
            case 5:
                guard let driver = script.pick(drivers) else { continue }
                let index = script.u16(), address = UInt64(script.u32()), length = script.u32(), flags = script.u16(), next = script.u16()
                try? driver.writeDescriptor(index % driver.size, address: address, length: length, flags: flags, next: next)
                try? driver.makeAvailable(script.u16())
            case 6:
                registers.notify(queue: Int(script.byte() % 4))
            case 7:
                harness.hostActs(script.byte(), script.bytes(Int(script.byte()) * 6))
            case 8:
                harness.loop.runReady()
                _ = registers.acknowledgeInterrupt()
                for driver in drivers { _ = try? driver.takeUsed() }
            default:
                registers.reset()
            }
        }
        harness.loop.runReady()
    }

    /// Seed scripts: a driver that sets the device up and uses it as Linux does, one
    /// request of each kind the device serves, so the fuzzer starts from the working paths.
    public static func seeds(for target: Target) -> [(name: String, bytes: [UInt8])] {
        let setUp: [UInt8] = [0x04, 0, 3]  // the device's features; queues of 16
        func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF)] }
        func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(value >> (8 * $0) & 0xFF) } }
        func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(value >> (8 * $0) & 0xFF) } }
        /// Op 4: a chain on queue `queue` of readable (bytes) and writable (length) buffers.
        func chain(_ queue: UInt8, _ buffers: [(readable: [UInt8]?, writable: Int)]) -> [UInt8] {
            var op: [UInt8] = [4, queue, UInt8(buffers.count - 1)]
            for buffer in buffers {
                if let bytes = buffer.readable { op += [0] + le16(bytes.count) + bytes } else { op += [1] + le16(buffer.writable) }
            }
            return op
        }
        let notify = { (queue: UInt8) -> [UInt8] in [6, queue] }
        let settle: [UInt8] = [8]
        switch target {
        case .block:
            func request(_ type: UInt32, sector: UInt64, data: [UInt8]?, dataLength: Int) -> [UInt8] {
                let header = le32(type) + le32(0) + le64(sector)
                var buffers: [(readable: [UInt8]?, writable: Int)] = [(header, 0)]
                if let data { buffers.append((data, 0)) } else if dataLength > 0 { buffers.append((nil, dataLength)) }
                buffers.append((nil, 1))
                return chain(0, buffers) + notify(0) + settle
            }
            return [
                ("read", setUp + request(0, sector: 0, data: nil, dataLength: 512)),
                ("write-then-read", setUp + request(1, sector: 2, data: [UInt8](repeating: 0x5A, count: 512), dataLength: 0)
                    + request(0, sector: 2, data: nil, dataLength: 1024)),
                ("flush-and-id", setUp + request(4, sector: 0, data: nil, dataLength: 0) + request(8, sector: 0, data: nil, dataLength: 20)),
                ("past-the-end", setUp + request(0, sector: 200, data: nil, dataLength: 512)),
            ]
        case .net:
            let frame: [UInt8] = [0x02, 0x42, 0x0a, 0x58, 0x07, 0x02, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00] + [UInt8](repeating: 0x45, count: 46)
            let rx = (0..<4).flatMap { _ in chain(0, [(nil, 1526)]) }
            return [
                ("receive", setUp + rx + notify(0) + [7, 0, 10] + settle),
                ("transmit", setUp + chain(1, [([UInt8](repeating: 0, count: 12), 0), (frame, 0)]) + notify(1) + settle),
                ("mergeable-small-buffers", setUp + (0..<16).flatMap { _ in chain(0, [(nil, 256)]) } + notify(0) + [7, 0, 200] + settle),
            ]
        case .vsock:
            func packet(op: UInt16, srcPort: UInt32, dstPort: UInt32, payload: [UInt8] = []) -> [UInt8] {
                le64(3) + le64(2) + le32(srcPort) + le32(dstPort) + le32(UInt32(payload.count)) + le16(1) + le16(Int(op))
                    + le32(0) + le32(65536) + le32(0) + payload
            }
            let rx = (0..<4).flatMap { _ in chain(0, [(nil, 4096)]) } + notify(0) + chain(2, [(nil, 8)])
            return [
                ("guest-connects", setUp + rx + chain(1, [(packet(op: 1, srcPort: 50000, dstPort: 1024), 0)]) + notify(1) + settle
                    + chain(1, [(packet(op: 5, srcPort: 50000, dstPort: 1024, payload: Array("hello".utf8)), 0)]) + notify(1) + settle),
                ("host-connects", setUp + rx + [7, 0, 2] + settle
                    + chain(1, [(packet(op: 2, srcPort: 1024, dstPort: 1024), 0)]) + notify(1) + settle),
            ]
        case .entropy:
            return [("fill", setUp + chain(0, [(nil, 64)]) + notify(0) + settle)]
        case .fileSystem:
            return FileSystemSeeds.seeds(setUp: setUp, chain: chain, notify: notify, settle: settle)
        }
    }

    /// The device under test, its transport and its host side.
    final class Harness {
        let device: any VirtioDevice
        let transport: VirtioMMIOTransport
        let loop: EventLoop
        private var cleanup: [() -> Void] = []
        private var peer: Int32 = -1
        /// Vsock clients made by this input (each holds a descriptor until the end).
        private var clients = 0
        /// The directory a virtio-fs input exports.
        private var exportPath: String?

        init(_ target: Target, memory: GuestMemory) throws {
            loop = try EventLoop()
            switch target {
            case .block:
                device = try BlockDevice(path: DeviceFuzzer.diskPath, readOnly: false)
            case .entropy:
                device = EntropyDevice()
            case .net:
                let backend = try SocketPairBackend()
                peer = backend.peer
                device = try NetDevice(backend: backend, mac: MACAddress("02:42:0a:58:07:02")!, mtu: 1500, eventLoop: loop)
            case .vsock:
                let vsock = try VsockDevice(guestCID: 3, udsPath: DeviceFuzzer.vsockPath, eventLoop: loop)
                device = vsock
                cleanup.append { vsock.tearDown() }
            case .fileSystem:
                let export = try FileSystemSeeds.freshExport()
                exportPath = export
                device = try FileSystemDevice(tag: "kataShared", directory: export, workers: 0)
                cleanup.append { FileSystemSeeds.removeExport(export) }
            }
            transport = VirtioMMIOTransport(device: device, memory: memory, raiseInterrupt: {})
        }

        /// What the host side does: a frame from the network (net), a client connecting
        /// to the vsock socket and sending its connect line and data (vsock).
        func hostActs(_ choice: UInt8, _ bytes: [UInt8]) {
            if peer >= 0 {
                _ = bytes.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) }
            } else if let exportPath {
                FileSystemSeeds.hostChanges(exportPath, choice, bytes)
            } else if device is VsockDevice, clients < 16 {
                // Non-blocking: a connect to a full backlog fails instead of hanging.
                guard let client = try? UnixSocket.connect(DeviceFuzzer.vsockPath, nonBlocking: true) else { return }
                clients += 1
                let line = choice & 1 == 0 ? Array("CONNECT \(1024 + Int(choice % 4))\n".utf8) : []
                _ = (line + bytes).withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                loop.runReady()
                if choice & 2 == 0 { close(client) } else { cleanup.append { close(client) } }
            }
        }

        func finish() {
            transport.write(offset: 0x070, bytes: [0, 0, 0, 0])
            loop.runReady()
            cleanup.forEach { $0() }
        }
    }

    /// A 64 KiB disk image and a directory for the vsock socket, made once per process.
    static let directory: String = {
        let path = (try? HostSupport.makeTemporaryDirectory(prefix: "/tmp/kasa-device-fuzz-")) ?? "/tmp"
        _ = FileManager.default.createFile(atPath: path + "/disk.img", contents: Data(count: 64 << 10))
        // Gone with the process (the fuzzer and the replaying tests alike).
        if path != "/tmp" { atexit { try? FileManager.default.removeItem(atPath: DeviceFuzzer.directory) } }
        return path
    }()
    static var diskPath: String { directory + "/disk.img" }
    static var vsockPath: String { directory + "/v.sock" }

    /// Reads the input front to back; past its end every read is zero.
    struct Script {
        let bytes: [UInt8]
        var offset = 0
        /// How many bytes the last `bytes(_:)` really took.
        var lastCount = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var isEmpty: Bool { offset >= bytes.count }
        mutating func byte() -> UInt8 {
            guard offset < bytes.count else { return 0 }
            defer { offset += 1 }
            return bytes[offset]
        }
        mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }
        mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
        mutating func bytes(_ count: Int) -> [UInt8] {
            let end = min(bytes.count, offset + count)
            let taken = offset < end ? Array(bytes[offset..<end]) : []
            offset = max(offset, end)
            lastCount = taken.count
            return taken
        }
        mutating func pick<T>(_ items: [T]) -> T? {
            items.isEmpty ? nil : items[Int(byte()) % items.count]
        }
    }
}

import Boot
import CKVM
import CLinux
import GuestMemory
import HostOS
import KVM
import Snapshot
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// What a clone gets of its own when it is restored: the host ends of its devices.
public struct RestoreSettings: Sendable {
    /// The vsock device's Unix socket (required when the snapshot has vsock).
    public var vsockUDSPath: String?
    /// One backend per network interface of the snapshot, in order.
    public var networkBackends: [NetworkInterfaceConfiguration.Backend]
    /// The directory each virtio-fs device of the snapshot serves, in order, with the
    /// snapshot's tags (the guest had not mounted them: the clone's are its own).
    public var sharedDirectories: [SharedDirectoryConfiguration] = []
    public var console: ConsoleOutput
    public var forwardStandardInput: Bool
    public var kvmPath: String
    /// A sampling profile of the restored guest (`VMConfiguration.profilePath`).
    public var profilePath: String?
    public var profileIntervalMicroseconds = VMConfiguration.defaultProfileIntervalMicroseconds

    public init(vsockUDSPath: String? = nil, networkBackends: [NetworkInterfaceConfiguration.Backend] = [],
                console: ConsoleOutput = .standardOutput, forwardStandardInput: Bool = false, kvmPath: String = KVMSystem.defaultPath) {
        self.vsockUDSPath = vsockUDSPath
        self.networkBackends = networkBackends
        self.console = console
        self.forwardStandardInput = forwardStandardInput
        self.kvmPath = kvmPath
    }
}

/// What `snapshot` wrote.
public struct SnapshotSummary: Sendable {
    public let directory: String
    /// Bytes of guest RAM written (pages that were never written or are all zeros are holes).
    public let memoryBytesWritten: UInt64
    public let memoryBytes: UInt64
}

extension MicroVM {
    /// Seconds a vCPU or the event loop may take to reach its parking place.
    static let pauseTimeout = 5.0

    public var isPaused: Bool { pauseLock.withLock { paused } }

    /// Stops every vCPU between instructions (any I/O it was doing completed) and the
    /// device event loop between events. The guest's clock keeps running (kvm-clock);
    /// nothing is lost. Pausing a paused VM does nothing.
    public func pause() throws {
        try pauseLock.withLock {
            guard !paused else { return }
            let running = threadsLock.withLock { threads }
            guard running.count == vcpus.count, !latch.isStopped else { throw VMMError.pauseFailed("the VM is not running") }
            let vcpusParked = vcpuGate.pause(timeout: MicroVM.pauseTimeout) {
                for (vcpu, thread) in zip(vcpus, running) {
                    vcpu.requestExit()
                    thread.kick()
                }
            }
            guard vcpusParked else {
                vcpuGate.resume()
                throw VMMError.pauseFailed("a vCPU did not stop within \(MicroVM.pauseTimeout) s")
            }
            guard eventLoop.pause(timeout: MicroVM.pauseTimeout) else {
                eventLoop.resume()
                vcpuGate.resume()
                throw VMMError.pauseFailed("the device event loop did not stop within \(MicroVM.pauseTimeout) s")
            }
            paused = true
        }
    }

    /// How often a snapshot waiting for its devices looks again.
    static let settlePollMicroseconds: UInt32 = 50_000

    /// What keeps a device's state out of a snapshot now, if anything (the first found).
    func snapshotObstacle() -> String? {
        for slot in virtio.slots {
            if let obstacle = slot.transport.inspect({ slot.transport.device.snapshotObstacle }) { return obstacle }
        }
        return nil
    }

    /// Lets a paused VM continue; resuming a running VM does nothing.
    public func resume() {
        pauseLock.withLock {
            guard paused else { return }
            eventLoop.resume()
            vcpuGate.resume()
            paused = false
        }
    }

    /// Writes the VM's complete state to `directory` (see `SnapshotFiles`): pauses it if it
    /// runs, and lets it continue afterwards. `vmmVersion` is recorded; only that version
    /// restores the snapshot. A device state a snapshot cannot hold (an open vsock
    /// connection) is refused at once, or, for a running VM and `settleSeconds` > 0, waited
    /// out that long (the guest is running: a connection the host just closed goes away
    /// once the guest has seen the reset).
    public func snapshot(to directory: String, vmmVersion: String, settleSeconds: Double = 0) throws -> SnapshotSummary {
        let wasPaused = isPaused
        var waited = 0.0
        while true {
            // Waiting while the guest runs: the device's state is read under its transport's lock.
            if !wasPaused && waited < settleSeconds && snapshotObstacle() != nil {
                usleep(MicroVM.settlePollMicroseconds)
                waited += Double(MicroVM.settlePollMicroseconds) / 1e6
                continue
            }
            if !wasPaused { try pause() }
            // Paused, the devices stand still: this answer holds for the snapshot below.
            guard let obstacle = snapshotObstacle() else { break }
            if !wasPaused { resume() }
            // It came back between the look and the pause: wait again while there is time.
            if !wasPaused && waited < settleSeconds { continue }
            throw VMMError.snapshotFailed("not now: \(obstacle)\(waited > 0 ? " (still, after \(Int(waited.rounded())) s)" : "")")
        }
        defer { if !wasPaused { resume() } }
        return try pauseLock.withLock {
            guard paused else { throw VMMError.pauseFailed("the VM was resumed during the snapshot") }
            let manifest = try captureManifest(vmmVersion: vmmVersion)
            let memoryBytes = memory.totalSize
            var written: UInt64 = 0
            do {
                try SnapshotFiles.write(
                    directory: directory,
                    state: SnapshotFiles.encodeState(manifest.encoded(), format: SnapshotManifest.formatVersion),
                    memoryHeader: SnapshotFiles.memoryHeader(snapshotID: manifest.snapshotID, memoryBytes: memoryBytes,
                                                             format: SnapshotManifest.formatVersion),
                    writeMemory: { file in written = try memory.writeSnapshot(to: file, offset: SnapshotFiles.memoryOffset) })
            } catch {
                throw VMMError.snapshotFailed("\(error)")
            }
            return SnapshotSummary(directory: directory, memoryBytesWritten: written, memoryBytes: memoryBytes)
        }
    }

    private func captureManifest(vmmVersion: String) throws -> SnapshotManifest {
        var vcpuStates: [VCPUState] = []
        for (index, vcpu) in vcpus.enumerated() {
            do {
                // On the vCPU's own thread, parked: KVM's vCPU calls belong to the thread that runs it.
                vcpuStates.append(try vcpuGate.perform(on: index) { try vcpu.captureState() })
            } catch {
                throw VMMError.snapshotFailed("reading vCPU \(vcpu.id): \(error)")
            }
        }
        let machineState: MachineState
        do {
            machineState = try machine.captureState()
        } catch {
            throw VMMError.snapshotFailed("reading the interrupt controllers and clock: \(error)")
        }
        var random = [UInt8](repeating: 0, count: 16)
        guard random.withUnsafeMutableBytes({ clinux_getrandom($0.baseAddress, 16) }) == 16 else {
            throw VMMError.snapshotFailed("no random bytes for the snapshot ID")
        }
        return SnapshotManifest(
            vmmVersion: vmmVersion, cpuModel: try MicroVM.cpuModel(kvm), snapshotID: random,
            memoryMiB: configuration.memoryMiB, commandLine: effectiveCommandLine,
            devices: try virtio.slots.enumerated().map { index, slot in
                SnapshotManifest.DeviceRecord(kind: try deviceKind(slot: index, transport: slot.transport),
                                              transport: slot.transport.captureState())
            },
            serial: serial.captureState(), machine: machineState, vcpus: vcpuStates)
    }

    /// The device in slot `slot`, as `makeVirtioDevices` ordered them: drives, drive slots,
    /// entropy, vsock, shared directories, network interfaces.
    private func deviceKind(slot: Int, transport: VirtioMMIOTransport) throws -> SnapshotManifest.DeviceRecord.Kind {
        let device = transport.device
        if let drive = device as? BlockDevice {
            let configured = slot < configuration.drives.count ? configuration.drives[slot] : nil
            return transport.inspect {
                if let configured { return .drive(configured, sectors: drive.capacitySectors) }
                return .driveSlot(medium: drive.hasMedium ? drive.path : nil, identifier: drive.identifierText, sectors: drive.capacitySectors)
            }
        }
        if let vsock = device as? VsockDevice { return .vsock(guestCID: vsock.guestCID) }
        if let net = device as? NetDevice { return .network(mac: net.mac.bytes, mtu: net.mtu) }
        if let shared = device as? FileSystemDevice { return .sharedDirectory(tag: shared.tag) }
        if device is EntropyDevice { return .entropy }
        throw VMMError.snapshotFailed("slot \(slot) holds a device (type \(device.deviceType)) a snapshot cannot describe")
    }

    /// The host CPU as KVM reports it: vendor and family/model/stepping signature.
    static func cpuModel(_ kvm: KVMSystem) throws -> String {
        let entries = try kvm.supportedCPUID()
        guard let vendor = entries.first(where: { $0.function == 0 }), let signature = entries.first(where: { $0.function == 1 }) else {
            return "unknown"
        }
        let name = [vendor.ebx, vendor.edx, vendor.ecx].flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
        return String(decoding: name, as: UTF8.self) + " signature 0x" + String(signature.eax, radix: 16)
    }
}

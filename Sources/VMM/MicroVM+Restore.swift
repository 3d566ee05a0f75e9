import Boot
import GuestMemory
import KVM
import Snapshot
import Virtio
#if canImport(Glibc)
import Glibc
#endif

extension MicroVM {
    /// Builds a VM from the snapshot in `directory`: the same devices at the same addresses,
    /// guest RAM mapped copy-on-write from the memory file (every clone shares its pages
    /// until it writes them), and every vCPU, KVM's interrupt controllers and clock, the
    /// UART and each virtio device as they were. `run` then continues the guest where it
    /// stopped. Refused with a clear error: a snapshot of another kasa-vmm version or CPU
    /// model, a damaged state file, a memory file that is not its own.
    public convenience init(restoring directory: String, settings: RestoreSettings, vmmVersion: String) throws {
        let manifest = try SnapshotManifest.read(directory: directory)
        guard manifest.vmmVersion == vmmVersion else {
            throw VMMError.snapshotFailed("\(directory) was written by kasa-vmm \(manifest.vmmVersion); this is \(vmmVersion)")
        }
        let configuration = try MicroVM.configuration(restoring: manifest, settings: settings, directory: directory)
        try MicroVM.checkSize(configuration)
        let memoryFile: Int32
        do {
            memoryFile = try SnapshotFiles.openMemory(directory: directory, snapshotID: manifest.snapshotID,
                                                      memoryBytes: configuration.memoryMiB << 20, format: SnapshotManifest.formatVersion)
        } catch {
            throw VMMError.snapshotFailed("\(error)")
        }
        // The mappings keep the file's pages; the descriptor is not needed after mapping.
        defer { close(memoryFile) }
        let platform = try Platform(configuration) { ranges in
            try GuestMemory(ranges: ranges, restoringFrom: memoryFile, offset: SnapshotFiles.memoryOffset)
        }
        let hostModel = try MicroVM.cpuModel(platform.kvm)
        guard hostModel == manifest.cpuModel else {
            throw VMMError.snapshotFailed("\(directory) was taken on a \(manifest.cpuModel), this host is a \(hostModel)")
        }
        guard manifest.devices.count == platform.virtio.slots.count else {
            throw VMMError.snapshotFailed("the snapshot has \(manifest.devices.count) devices, \(platform.virtio.slots.count) were built")
        }
        for capability in KVMCapability.snapshot where platform.kvm.check(capability) == 0 {
            throw VMMError.snapshotFailed("this host's KVM lacks \(capability.name)")
        }
        // Interrupts raised while devices are restored need the vCPUs' local APICs in place,
        // so: KVM's chips and clock, then the vCPUs, then the devices.
        do {
            try platform.machine.restoreState(manifest.machine)
            var vcpus: [VCPU] = []
            for (index, state) in manifest.vcpus.enumerated() {
                let vcpu = try platform.machine.createVCPU(id: UInt32(index))
                try vcpu.restoreState(state)
                vcpus.append(vcpu)
            }
            for (slot, record) in zip(platform.virtio.slots, manifest.devices) {
                try MicroVM.restoreDevice(slot.transport, record)
            }
            platform.serial.restore(manifest.serial)
            self.init(configuration: configuration, platform: platform, boot: nil, effectiveCommandLine: manifest.commandLine, vcpus: vcpus)
        } catch let error as VMMError {
            throw error
        } catch {
            throw VMMError.snapshotFailed("restoring \(directory): \(error)")
        }
    }

    /// The configuration restoring `directory` would build (the snapshot's drives among it),
    /// read from its state file: what a jailed kasa-vmm must keep before it restores.
    public static func configuration(restoring directory: String, settings: RestoreSettings) throws -> VMConfiguration {
        try configuration(restoring: SnapshotManifest.read(directory: directory), settings: settings, directory: directory)
    }

    /// The configuration the snapshot's VM was built with, with this clone's host ends.
    static func configuration(restoring manifest: SnapshotManifest, settings: RestoreSettings, directory: String) throws -> VMConfiguration {
        var configuration = VMConfiguration(kernelPath: directory, commandLine: manifest.commandLine, memoryMiB: manifest.memoryMiB,
                                            vcpuCount: manifest.vcpus.count, console: settings.console,
                                            forwardStandardInput: settings.forwardStandardInput, kvmPath: settings.kvmPath)
        configuration.profilePath = settings.profilePath
        configuration.profileIntervalMicroseconds = settings.profileIntervalMicroseconds
        var networks: [(mac: [UInt8], mtu: UInt16)] = []
        var sharedTags: [String] = []
        for record in manifest.devices {
            switch record.kind {
            case .drive(let drive, _): configuration.drives.append(drive)
            case .driveSlot: configuration.driveSlots += 1
            case .entropy: configuration.entropy = true
            case .vsock(let cid):
                guard let path = settings.vsockUDSPath else {
                    throw VMMError.snapshotFailed("the snapshot has a vsock device: give the clone its socket (--vsock-uds)")
                }
                configuration.vsock = VsockConfiguration(guestCID: cid, udsPath: path)
            case .network(let mac, let mtu): networks.append((mac, mtu))
            case .sharedDirectory(let tag): sharedTags.append(tag)
            }
        }
        // Each virtio-fs device serves the clone's own directory; the guest knows it by its tag.
        let givenTags = settings.sharedDirectories.map(\.tag)
        guard sharedTags == givenTags else {
            throw VMMError.snapshotFailed("the snapshot has virtio-fs devices tagged \(sharedTags), the clone gave \(givenTags) (--shared-dir, in order)")
        }
        configuration.sharedDirectories = settings.sharedDirectories
        guard networks.count == settings.networkBackends.count else {
            throw VMMError.snapshotFailed("the snapshot has \(networks.count) network interfaces, \(settings.networkBackends.count) backends were given")
        }
        configuration.networkInterfaces = zip(networks, settings.networkBackends).map { network, backend in
            NetworkInterfaceConfiguration(backend: backend, mac: MACAddress(bytes: network.mac), mtu: network.mtu)
        }
        return configuration
    }

    /// Puts a drive slot's medium back, checks every drive still has the capacity the guest
    /// saw, then restores the transport (which activates the device again).
    static func restoreDevice(_ transport: VirtioMMIOTransport, _ record: SnapshotManifest.DeviceRecord) throws {
        let device = transport.device
        switch record.kind {
        case .drive(let drive, let sectors):
            guard let block = device as? BlockDevice else { throw VMMError.snapshotFailed("device order differs from the snapshot's") }
            let capacity = transport.inspect { block.capacitySectors }
            guard capacity == sectors else {
                throw VMMError.snapshotFailed("drive \(drive.path) has \(capacity) sectors; the guest saw \(sectors)")
            }
        case .driveSlot(let medium, let identifier, let sectors):
            guard let block = device as? BlockDevice else { throw VMMError.snapshotFailed("device order differs from the snapshot's") }
            if let medium {
                try transport.inspect { try block.insertMedium(path: medium, identifier: identifier) }
                let capacity = transport.inspect { block.capacitySectors }
                guard capacity == sectors else {
                    throw VMMError.snapshotFailed("drive slot medium \(medium) has \(capacity) sectors; the guest saw \(sectors)")
                }
            }
        case .entropy:
            guard device is EntropyDevice else { throw VMMError.snapshotFailed("device order differs from the snapshot's") }
        case .vsock:
            guard device is VsockDevice else { throw VMMError.snapshotFailed("device order differs from the snapshot's") }
        case .network:
            guard device is NetDevice else { throw VMMError.snapshotFailed("device order differs from the snapshot's") }
        case .sharedDirectory(let tag):
            guard let shared = device as? FileSystemDevice, shared.tag == tag else {
                throw VMMError.snapshotFailed("device order differs from the snapshot's")
            }
        }
        try transport.restore(record.transport)
    }
}

/// What a snapshot holds, for people and tools (the tests read where each vCPU stopped).
public struct SnapshotDescription: Sendable {
    public let vmmVersion: String
    public let cpuModel: String
    public let memoryMiB: UInt64
    public let commandLine: String
    /// Each vCPU's instruction pointer and privilege level (0 kernel, 3 user) when saved.
    public let vcpus: [(instructionPointer: UInt64?, privilegeLevel: Int?)]
    /// The virtio devices in slot order: "drive", "drive-slot", "entropy", "vsock",
    /// "shared-dir", "network".
    public let devices: [String]
}

extension MicroVM {
    /// Reads and checks a snapshot's state file (not its memory file).
    public static func describeSnapshot(_ directory: String) throws -> SnapshotDescription {
        let manifest = try SnapshotManifest.read(directory: directory)
        return SnapshotDescription(
            vmmVersion: manifest.vmmVersion, cpuModel: manifest.cpuModel, memoryMiB: manifest.memoryMiB,
            commandLine: manifest.commandLine,
            vcpus: manifest.vcpus.map { ($0.instructionPointer, $0.privilegeLevel) },
            devices: manifest.devices.map { record in
                switch record.kind {
                case .drive: return "drive"
                case .driveSlot: return "drive-slot"
                case .entropy: return "entropy"
                case .vsock: return "vsock"
                case .network: return "network"
                case .sharedDirectory: return "shared-dir"
                }
            })
    }
}

import KVM
import LegacyDevices
import Snapshot
import Virtio

/// Everything in a snapshot's state file: what the VM was built from (so that restore
/// builds the same devices at the same addresses), where its memory file must come from,
/// and the state of every vCPU, of KVM's interrupt controllers and clock, and of each device.
struct SnapshotManifest: Equatable {
    /// Bumped whenever the encoding below changes; other values are refused.
    /// 2: virtio-fs devices (kind 6).
    static let formatVersion: UInt32 = 2

    /// The kasa-vmm that wrote it; only the same version restores it (device state is its own).
    var vmmVersion: String
    /// The host CPU's vendor and family/model/stepping: vCPU state (CPUID, MSRs, XSAVE
    /// layout) is only meaningful on the same model.
    var cpuModel: String
    /// Written into the memory file's header too: the pair must match.
    var snapshotID: [UInt8]
    var memoryMiB: UInt64
    var commandLine: String
    var devices: [DeviceRecord]
    var serial: Serial16550.State
    var machine: MachineState
    var vcpus: [VCPUState]

    /// One virtio device in slot order, with its transport state.
    struct DeviceRecord: Equatable {
        enum Kind: Equatable {
            /// `sectors`: the capacity the guest saw; the file must still have it.
            case drive(DriveConfiguration, sectors: UInt64)
            /// An empty-able slot (`--drive-slots`); `medium` is what it held at snapshot time.
            case driveSlot(medium: String?, identifier: String?, sectors: UInt64)
            case entropy
            case vsock(guestCID: UInt64)
            case network(mac: [UInt8], mtu: UInt16)
            /// A virtio-fs device the guest had not mounted (`FileSystemDevice.snapshotObstacle`):
            /// its tag is the guest's; the directory it serves is each clone's own.
            case sharedDirectory(tag: String)
        }
        var kind: Kind
        var transport: VirtioMMIOTransport.State
    }
}

// MARK: - Files

extension SnapshotManifest {
    /// The manifest of the snapshot in `directory`, its state file checked (magic, format,
    /// checksum) and decoded; every failure is a `VMMError.snapshotFailed` saying why.
    static func read(directory: String) throws -> SnapshotManifest {
        do {
            let payload = try SnapshotFiles.decodeState(try SnapshotFiles.readState(directory: directory),
                                                        path: directory + "/" + SnapshotFiles.stateName, format: formatVersion)
            return try SnapshotManifest(decoding: payload)
        } catch {
            throw VMMError.snapshotFailed("\(error)")
        }
    }
}

// MARK: - Encoding

extension SnapshotManifest {
    func encoded() -> [UInt8] {
        var out = SnapshotEncoder()
        out.append(vmmVersion)
        out.append(cpuModel)
        out.append(bytes: snapshotID)
        out.append(memoryMiB)
        out.append(commandLine)
        out.append(UInt32(devices.count))
        for device in devices { device.encode(into: &out) }
        serial.encode(into: &out)
        out.append(UInt32(machine.interruptControllers.count))
        for chip in machine.interruptControllers { out.append(bytes: chip) }
        out.append(bytes: machine.timer)
        out.append(bytes: machine.clock)
        out.append(UInt32(vcpus.count))
        for vcpu in vcpus { vcpu.encode(into: &out) }
        return out.bytes
    }

    init(decoding bytes: [UInt8]) throws {
        var input = SnapshotDecoder(bytes)
        vmmVersion = try input.readString("the kasa-vmm version")
        cpuModel = try input.readString("the CPU model")
        snapshotID = try input.readBytes("the snapshot ID", limit: 64)
        memoryMiB = try input.read(UInt64.self, "the memory size")
        commandLine = try input.readString("the kernel command line")
        let deviceCount = try input.readCount("the device count", limit: 64)
        devices = try (0..<deviceCount).map { _ in try DeviceRecord(from: &input) }
        serial = try Serial16550.State(from: &input)
        let chipCount = try input.readCount("the interrupt controller count", limit: 3, minimumItemSize: 8)
        let chips = try (0..<chipCount).map { _ in try input.readBytes("an interrupt controller", limit: 4096) }
        machine = MachineState(interruptControllers: chips, timer: try input.readBytes("the PIT", limit: 4096),
                               clock: try input.readBytes("the clock", limit: 4096))
        let vcpuCount = try input.readCount("the vCPU count", limit: 256, minimumItemSize: 8)
        vcpus = try (0..<vcpuCount).map { _ in try VCPUState(from: &input) }
        guard input.isAtEnd else { throw SnapshotError.invalid("bytes left after the last vCPU") }
    }
}

extension SnapshotManifest.DeviceRecord {
    func encode(into out: inout SnapshotEncoder) {
        switch kind {
        case .drive(let drive, let sectors):
            out.append(UInt8(1))
            out.append(drive.path)
            out.append(drive.readOnly)
            out.append(drive.isRoot)
            out.append(optional: drive.identifier)
            out.append(sectors)
        case .driveSlot(let medium, let identifier, let sectors):
            out.append(UInt8(2))
            out.append(optional: medium)
            out.append(optional: identifier)
            out.append(sectors)
        case .entropy:
            out.append(UInt8(3))
        case .vsock(let cid):
            out.append(UInt8(4))
            out.append(cid)
        case .network(let mac, let mtu):
            out.append(UInt8(5))
            out.append(bytes: mac)
            out.append(mtu)
        case .sharedDirectory(let tag):
            out.append(UInt8(6))
            out.append(tag)
        }
        let state = transport
        out.append(state.status)
        out.append(state.deviceFeaturesSelect)
        out.append(state.driverFeaturesSelect)
        out.append(state.driverFeatures)
        out.append(state.queueSelect)
        out.append(state.interruptStatus)
        out.append(state.configurationGeneration)
        out.append(state.active)
        out.append(UInt32(state.queues.count))
        for queue in state.queues {
            out.append(queue.size)
            out.append(queue.ready)
            out.append(queue.descriptorTable)
            out.append(queue.availableRing)
            out.append(queue.usedRing)
            out.append(queue.eventIndex)
            out.append(queue.nextAvailable)
            out.append(queue.nextUsed)
            out.append(queue.lastSignalledUsed)
        }
    }

    init(from input: inout SnapshotDecoder) throws {
        switch try input.read(UInt8.self, "a device kind") {
        case 1:
            kind = .drive(DriveConfiguration(path: try input.readString("a drive path"), readOnly: try input.readBool("read-only"),
                                             isRoot: try input.readBool("root"), identifier: try input.readOptionalString("a drive ID")),
                          sectors: try input.read(UInt64.self, "a drive's capacity"))
        case 2:
            kind = .driveSlot(medium: try input.readOptionalString("a slot's medium"), identifier: try input.readOptionalString("a slot's ID"),
                              sectors: try input.read(UInt64.self, "a slot's capacity"))
        case 3:
            kind = .entropy
        case 4:
            kind = .vsock(guestCID: try input.read(UInt64.self, "the vsock CID"))
        case 5:
            kind = .network(mac: try input.readBytes("a MAC address", limit: 6), mtu: try input.read(UInt16.self, "an MTU"))
        case 6:
            kind = .sharedDirectory(tag: try input.readString("a virtio-fs tag"))
        case let other:
            throw SnapshotError.invalid("unknown device kind \(other)")
        }
        let status = try input.read(UInt32.self, "device status")
        let deviceFeaturesSelect = try input.read(UInt32.self, "feature select")
        let driverFeaturesSelect = try input.read(UInt32.self, "feature select")
        let driverFeatures = try input.read(UInt64.self, "driver features")
        let queueSelect = try input.read(UInt32.self, "queue select")
        let interruptStatus = try input.read(UInt32.self, "interrupt status")
        let generation = try input.read(UInt32.self, "config generation")
        let active = try input.readBool("device active")
        let queueCount = try input.readCount("the queue count", limit: 16, minimumItemSize: 33)
        let queues = try (0..<queueCount).map { _ in
            Virtqueue.State(size: try input.read(UInt16.self, "queue size"), ready: try input.readBool("queue ready"),
                            descriptorTable: try input.read(UInt64.self, "descriptor table"),
                            availableRing: try input.read(UInt64.self, "available ring"),
                            usedRing: try input.read(UInt64.self, "used ring"), eventIndex: try input.readBool("event index"),
                            nextAvailable: try input.read(UInt16.self, "next available"),
                            nextUsed: try input.read(UInt16.self, "next used"),
                            lastSignalledUsed: try input.read(UInt16.self, "last signalled"))
        }
        transport = VirtioMMIOTransport.State(
            status: status, deviceFeaturesSelect: deviceFeaturesSelect, driverFeaturesSelect: driverFeaturesSelect,
            driverFeatures: driverFeatures, queueSelect: queueSelect, interruptStatus: interruptStatus,
            configurationGeneration: generation, active: active, queues: queues)
    }
}

extension Serial16550.State {
    func encode(into out: inout SnapshotEncoder) {
        out.append(bytes: receiveFIFO)
        for register in [interruptEnable, lineControl, modemControl, scratch, divisorLow, divisorHigh, fifoControl] { out.append(register) }
        out.append(transmitterInterruptPending)
        out.append(lineAsserted)
    }

    init(from input: inout SnapshotDecoder) throws {
        let fifo = try input.readBytes("the UART's receive FIFO", limit: 64)
        var registers: [UInt8] = []
        for _ in 0..<7 { registers.append(try input.read(UInt8.self, "a UART register")) }
        self.init(receiveFIFO: fifo, interruptEnable: registers[0], lineControl: registers[1], modemControl: registers[2],
                  scratch: registers[3], divisorLow: registers[4], divisorHigh: registers[5], fifoControl: registers[6],
                  transmitterInterruptPending: try input.readBool("THRE pending"), lineAsserted: try input.readBool("UART line"))
    }
}

extension VCPUState {
    func encode(into out: inout SnapshotEncoder) {
        out.append(UInt32(parts.count))
        for (part, bytes) in parts {
            out.append(part.rawValue)
            out.append(bytes: bytes)
        }
        out.append(UInt32(msrs.count))
        for msr in msrs {
            out.append(msr.index)
            out.append(msr.value)
        }
        out.append(bytes: cpuid)
    }

    init(from input: inout SnapshotDecoder) throws {
        let partCount = try input.readCount("the vCPU state parts", limit: Part.allCases.count, minimumItemSize: 9)
        var parts: [(part: Part, bytes: [UInt8])] = []
        for _ in 0..<partCount {
            let raw = try input.read(UInt8.self, "a vCPU state part")
            guard let part = Part(rawValue: raw), !parts.contains(where: { $0.part == part }) else {
                throw SnapshotError.invalid("vCPU state part \(raw) is unknown or repeated")
            }
            parts.append((part, try input.readBytes("vCPU state", limit: 1 << 20)))
        }
        guard parts.count == Part.allCases.count else { throw SnapshotError.invalid("a vCPU's state is incomplete") }
        let msrCount = try input.readCount("the MSR count", limit: 4096, minimumItemSize: 12)
        var msrs: [(index: UInt32, value: UInt64)] = []
        for _ in 0..<msrCount { msrs.append((try input.read(UInt32.self, "an MSR index"), try input.read(UInt64.self, "an MSR value"))) }
        self.init(parts: parts, msrs: msrs, cpuid: try input.readBytes("the CPUID entries", limit: 1 << 20))
    }
}

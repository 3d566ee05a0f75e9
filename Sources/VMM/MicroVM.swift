import SharedFileSystem
import Boot
import CKVM
import GuestMemory
import KVM
import LegacyDevices
import MachineSize
import Virtio
import HostOS
#if canImport(Glibc)
import Glibc
#endif

/// One microVM: guest memory, vCPUs on their own threads, the legacy devices and the
/// booted kernel. Built completely by `init` (every failure there is a clear error),
/// then `run` blocks until the guest resets or fails, or `stop` is called. A VM can also
/// be built from a snapshot (`init(restoring:settings:)`, MicroVM+Snapshot.swift), and
/// paused and snapshotted while it runs.
public final class MicroVM: Sendable {
    public let configuration: VMConfiguration
    public let memory: GuestMemory
    /// How the kernel was loaded; nil for a VM restored from a snapshot.
    public let boot: BootResult?
    public let effectiveCommandLine: String
    let kvm: KVMSystem
    let machine: KVMVirtualMachine
    let vcpus: [VCPU]
    let bus: PortIOBus
    let serial: Serial16550
    let serialLineRecord: InterruptLineRecord
    let latch: StopLatch
    let virtio: VirtioDeviceSet
    let eventLoop: EventLoop
    /// Parks the vCPU threads for pause and snapshot (worker i is vCPU i).
    let vcpuGate: PauseGate
    let profiler: GuestProfiler?
    /// Serializes pause, resume and snapshot; `paused` is guarded by it.
    let pauseLock = Lock()
    nonisolated(unsafe) var paused = false
    let threadsLock = Lock()
    nonisolated(unsafe) var threads: [HostThread] = []
    private let assistLock = Lock()
    nonisolated(unsafe) private var assists: [UInt8: Int] = [:]

    /// How often the VMM finished an instruction KVM could not emulate, by opcode
    /// (0xCC int3, 0x9B fwait). Always empty on hardware KVM.
    public var emulationAssists: [UInt8: Int] { assistLock.withLock { assists } }

    /// KVM, guest memory and every device, before any vCPU exists: what a cold boot and a
    /// restore build alike (the same devices at the same addresses).
    struct Platform {
        let kvm: KVMSystem
        let machine: KVMVirtualMachine
        let memory: GuestMemory
        let eventLoop: EventLoop
        let virtio: VirtioDeviceSet
        let serial: Serial16550
        let serialLineRecord: InterruptLineRecord
        let latch: StopLatch
        let bus: PortIOBus

        /// `makeMemory` maps guest RAM for the layout's ranges (fresh, or from a snapshot).
        init(_ configuration: VMConfiguration, makeMemory: ([(start: GuestAddress, size: UInt64)]) throws -> GuestMemory) throws {
            let consoleSink = try ConsoleSink.make(configuration.console)
            kvm = try KVMSystem(path: configuration.kvmPath)
            try kvm.require()
            let vcpuLimit = min(kvm.maximumVCPUs, MPTable.maximumVCPUs)
            if configuration.vcpuCount > vcpuLimit {
                throw VMMError.vcpuCountInvalid(requested: configuration.vcpuCount, limit: vcpuLimit)
            }
            machine = try kvm.createVirtualMachine()
            try machine.setTSSAddress(BootLayout.kvmTSSAddress)
            try machine.setIdentityMapAddress(BootLayout.kvmIdentityMapAddress)
            memory = try makeMemory(BootLayout.ramRanges(memorySize: configuration.memoryMiB << 20))
            for (slot, region) in memory.regions.enumerated() {
                try machine.setMemoryRegion(slot: UInt32(slot), guestAddress: region.start.value, size: region.size, hostAddress: region.hostAddress)
            }
            // After the memory slots: on kvm_pvm, registering memory once the IRQ chip exists
            // costs ~6 ms more (measured by bench/boot-bench); hardware KVM accepts either order.
            try machine.createInterruptController()
            try machine.createProgrammableIntervalTimer()

            eventLoop = try EventLoop()
            virtio = try MicroVM.makeVirtioDevices(configuration, memory: memory, machine: machine, eventLoop: eventLoop)

            let machine = self.machine
            let latch = StopLatch()
            let serialLine = InterruptLineRecord()
            serial = Serial16550(output: consoleSink, interrupt: { high in
                serialLine.record(rising: high, status: Result { try machine.setInterruptLine(Serial16550.com1Interrupt, high: high) })
            })
            let keyboard = I8042Controller(onReset: { latch.stop(.reset) })
            var ports: [PortIOBus.Mapping] = [
                .init(base: Serial16550.com1Base, count: Serial16550.portCount, device: serial),
                .init(base: I8042Controller.dataPort, count: 5, device: keyboard),
                .init(base: 0x70, count: 2, device: QuietPort()),  // CMOS/RTC
                .init(base: 0x80, count: 1, device: QuietPort()),  // POST code / delay port
            ]
            if let hook = configuration.testHook {
                ports.append(.init(base: VMConfiguration.testHookPort, count: 1, device: TestHookPort(hook)))
            }
            bus = PortIOBus(mappings: ports)
            self.latch = latch
            serialLineRecord = serialLine
        }
    }

    init(configuration: VMConfiguration, platform: Platform, boot: BootResult?, effectiveCommandLine: String, vcpus: [VCPU]) {
        self.configuration = configuration
        kvm = platform.kvm
        machine = platform.machine
        memory = platform.memory
        eventLoop = platform.eventLoop
        virtio = platform.virtio
        serial = platform.serial
        serialLineRecord = platform.serialLineRecord
        latch = platform.latch
        bus = platform.bus
        self.boot = boot
        self.effectiveCommandLine = effectiveCommandLine
        self.vcpus = vcpus
        vcpuGate = PauseGate(workers: vcpus.count)
        profiler = configuration.profilePath.map {
            GuestProfiler(outputPath: $0, intervalMicroseconds: configuration.profileIntervalMicroseconds, vcpuCount: vcpus.count)
        }
    }

    /// The size rules every VM obeys, checked before KVM is touched, so a typo does not read
    /// as a host problem.
    static func checkSize(_ configuration: VMConfiguration) throws {
        let memoryMiB = configuration.memoryMiB
        if memoryMiB == 0 { throw VMMError.memoryZero }
        let minimumMiB = BootLayout.minimumMemory >> 20
        if memoryMiB < minimumMiB { throw VMMError.memoryTooSmall(requestedMiB: memoryMiB, minimumMiB: minimumMiB) }
        if memoryMiB > MachineSize.hostMemoryMiB { throw VMMError.memoryTooLarge(requestedMiB: memoryMiB, limitMiB: MachineSize.hostMemoryMiB) }
        if configuration.vcpuCount < 1 || configuration.vcpuCount > MPTable.maximumVCPUs {
            throw VMMError.vcpuCountInvalid(requested: configuration.vcpuCount, limit: MPTable.maximumVCPUs)
        }
    }

    /// Boots `configuration`'s kernel.
    public convenience init(configuration: VMConfiguration) throws {
        try MicroVM.checkSize(configuration)
        let kernel = try FileLoader.read(configuration.kernelPath, role: "kernel")
        let initrd = try configuration.initrdPath.map { try FileLoader.read($0, role: "initrd") }
        let cpuidPolicy = try CPUIDPolicy(hiding: configuration.hiddenCPUFeatures)
        let platform = try Platform(configuration) { try GuestMemory(ranges: $0) }

        var commandLine = KernelCommandLine(configuration.commandLine)
        commandLine.append(platform.virtio.commandLine)
        if let root = platform.virtio.rootParameters { commandLine.append(root) }
        if PVMGuestCommandLine.shouldApply(configuration.pvmCompatibility) {
            commandLine.append(PVMGuestCommandLine.parameters)
        }
        let boot = try LinuxBoot.load(BootConfiguration(
            kernel: kernel, initrd: initrd, commandLine: commandLine, memorySize: configuration.memoryMiB << 20,
            vcpuCount: configuration.vcpuCount, preferPVH: configuration.preferPVH), into: platform.memory)

        let supported = try platform.kvm.supportedCPUID().map(\.neutral)
        var created: [VCPU] = []
        for id in 0..<configuration.vcpuCount {
            let vcpu = try platform.machine.createVCPU(id: UInt32(id))
            try vcpu.setCPUID(cpuidPolicy.entries(for: id, of: configuration.vcpuCount, supported: supported).map(kvm_cpuid_entry2.init))
            try vcpu.setMSRs(ModelSpecificRegister.bootValues)
            try MicroVM.configureLocalInterrupts(vcpu)
            var fpu = kvm_fpu()
            fpu.fcw = 0x37F  // x87 default control word
            fpu.mxcsr = 0x1F80  // SSE: all exceptions masked
            try vcpu.setFPU(fpu)
            // Application processors wait for the guest's INIT/SIPI; only the BSP gets boot state.
            if id == 0 { try MicroVM.loadBootState(boot.bootProcessorState, into: vcpu) }
            created.append(vcpu)
        }
        self.init(configuration: configuration, platform: platform, boot: boot, effectiveCommandLine: commandLine.text, vcpus: created)
    }

    static func makeVirtioDevices(_ configuration: VMConfiguration, memory: GuestMemory, machine: KVMVirtualMachine,
                                  eventLoop: EventLoop) throws -> VirtioDeviceSet {
        let roots = configuration.drives.indices.filter { configuration.drives[$0].isRoot }
        guard roots.count <= 1 else { throw VMMError.severalRootDrives }
        var devices: [any VirtioDevice] = []
        do {
            for drive in configuration.drives {
                devices.append(try BlockDevice(path: drive.path, readOnly: drive.readOnly, identifier: drive.identifier))
            }
            guard configuration.driveSlots >= 0 else { throw VMMError.deviceSetupFailed("the number of drive slots cannot be negative") }
            for _ in 0..<configuration.driveSlots { devices.append(BlockDevice(emptyReadOnly: true)) }
        } catch let error as BlockDeviceError {
            throw VMMError.deviceSetupFailed(error.description)
        }
        if configuration.entropy { devices.append(EntropyDevice()) }
        if let vsock = configuration.vsock {
            do {
                devices.append(try VsockDevice(guestCID: vsock.guestCID, udsPath: vsock.udsPath, eventLoop: eventLoop))
            } catch let error as VsockError {
                throw VMMError.deviceSetupFailed("vsock: \(error)")
            }
        }
        for shared in configuration.sharedDirectories {
            do {
                devices.append(try FileSystemDevice(tag: shared.tag, directory: shared.path,
                                                    options: SharedDirectoryOptions(readOnly: shared.readOnly, cache: shared.cache)))
            } catch {
                throw VMMError.deviceSetupFailed("\(error)")
            }
        }
        let report: @Sendable (String) -> Void = { line in ConsoleSink.writeAll(STDERR_FILENO, Array("kasa-vmm: \(line)\n".utf8)) }
        for (index, interface) in configuration.networkInterfaces.enumerated() {
            do {
                let backend: any NetBackend
                switch interface.backend {
                case .tapName(let name): backend = try TapDevice(name: name)
                case .descriptor(let descriptor): backend = try TapDevice(adopting: descriptor)
                case .unplugged: backend = try UnpluggedBackend()
                }
                devices.append(try NetDevice(backend: backend, mac: interface.mac ?? MACAddress.random(), mtu: interface.mtu,
                                             eventLoop: eventLoop, report: report))
            } catch {
                throw VMMError.deviceSetupFailed("network interface \(index): \(error)")
            }
        }
        let rootReadOnly = roots.first.map { configuration.drives[$0].readOnly } ?? false
        return try VirtioDeviceSet(devices: devices, rootDriveIndex: roots.first, rootReadOnly: rootReadOnly, memory: memory,
                                   machine: machine, eventLoop: eventLoop, report: report)
    }

    /// LINT0 delivers the legacy PIC's interrupts (ExtINT) and LINT1 NMIs, as a PC BIOS leaves them.
    static func configureLocalInterrupts(_ vcpu: VCPU) throws {
        var lapic = try vcpu.localAPIC()
        withUnsafeMutableBytes(of: &lapic.regs) { registers in
            let lint0 = 0x350, lint1 = 0x360
            let extINT: UInt32 = 0x7 << 8, nmi: UInt32 = 0x4 << 8
            let clearMode = ~UInt32(0x700)
            let lint0Value = (registers.loadUnaligned(fromByteOffset: lint0, as: UInt32.self) & clearMode) | extINT
            let lint1Value = (registers.loadUnaligned(fromByteOffset: lint1, as: UInt32.self) & clearMode) | nmi
            registers.storeBytes(of: lint0Value, toByteOffset: lint0, as: UInt32.self)
            registers.storeBytes(of: lint1Value, toByteOffset: lint1, as: UInt32.self)
        }
        try vcpu.setLocalAPIC(lapic)
    }

    static func loadBootState(_ state: InitialCPUState, into vcpu: VCPU) throws {
        var special = try vcpu.specialRegisters()
        let code = kvm_segment(state.code)
        let data = kvm_segment(state.data)
        special.cs = code
        special.ds = data
        special.es = data
        special.fs = data
        special.gs = data
        special.ss = data
        special.tr = kvm_segment(state.task)
        special.gdt.base = state.gdtBase
        special.gdt.limit = state.gdtLimit
        special.idt.base = state.idtBase
        special.idt.limit = state.idtLimit
        special.cr0 = state.cr0
        special.cr3 = state.cr3
        special.cr4 = state.cr4
        special.efer = state.efer
        try vcpu.setSpecialRegisters(special)

        var registers = kvm_regs()
        registers.rip = state.rip
        registers.rsp = state.rsp
        registers.rbp = state.rbp
        registers.rsi = state.rsi
        registers.rbx = state.rbx
        registers.rflags = state.rflags
        try vcpu.setRegisters(registers)
    }

    /// Runs the VM until it ends; returns why. `onceThreadsStarted` runs on the calling
    /// thread after every thread of the VM has started, before waiting for the end
    /// (kasa-vmm loads the calling thread's seccomp filter there: threads inherit their
    /// creator's filter, so it must come after the last one starts).
    public func run(onceThreadsStarted: (() -> Void)? = nil) throws -> VMExitReason {
        HostThread.installKickHandler()
        var started: [HostThread] = []
        for vcpu in vcpus {
            let thread = try HostThread(name: "kasa-vcpu\(vcpu.id)") { [self] in self.vcpuLoop(vcpu) }
            started.append(thread)
        }
        let loop = eventLoop
        MicroVM.watchSerialInterrupt(serial, on: loop)
        MicroVM.watchVirtioTransports(virtio.slots.map(\.transport), on: loop)
        let loopThread = try HostThread(name: "kasa-events") { loop.run() }
        threadsLock.withLock { threads = started }
        if configuration.forwardStandardInput { try startConsoleInput() }
        var samplerThread: HostThread?
        if let profiler {
            let vcpus = self.vcpus, latch = self.latch, vcpuThreads = started
            samplerThread = try HostThread(name: "kasa-profiler") {
                profiler.run(vcpus: vcpus, threads: vcpuThreads, isStopped: { latch.isStopped })
            }
        }
        onceThreadsStarted?()
        let reason = latch.wait()
        samplerThread?.join()
        if let problem = profiler?.write() { ConsoleSink.writeAll(STDERR_FILENO, Array("kasa-vmm: \(problem)\n".utf8)) }
        // A paused VM stops too: parked vCPUs and the parked loop are let go.
        vcpuGate.release()
        for (vcpu, thread) in zip(vcpus, started) {
            vcpu.requestExit()
            thread.kick()
        }
        for thread in started { thread.join() }
        eventLoop.stop()
        loopThread.join()
        // Host-side sockets (the vsock listener and its connections) close with the VM.
        for slot in virtio.slots { (slot.transport.device as? VsockDevice)?.tearDown() }
        return reason
    }

    /// Puts `path` (read-only) into the first empty drive slot (`VMConfiguration.driveSlots`)
    /// and tells the guest; returns the drive's index and Linux's name for it. Callable
    /// from any thread while the VM runs.
    public func attachDrive(path: String, identifier: String? = nil) throws -> AttachedDrive {
        try attachDrive { drive in try drive.insertMedium(path: path, identifier: identifier) }
    }

    /// `attachDrive(path:)` for a file the caller opened: the descriptor is the drive's
    /// from now on (closed here if no slot takes it). `name` stands for its path.
    public func attachDrive(descriptor: Int32, name: String, identifier: String? = nil) throws -> AttachedDrive {
        var owned: Int32? = descriptor
        defer { if let owned { close(owned) } }
        return try attachDrive { drive in
            guard let medium = owned else { return }
            owned = nil
            try drive.insertMedium(descriptor: medium, name: name, identifier: identifier)
        }
    }

    private func attachDrive(inserting insert: (BlockDevice) throws -> Void) throws -> AttachedDrive {
        for (index, slot) in virtio.slots.enumerated().dropFirst(configuration.drives.count).prefix(configuration.driveSlots) {
            guard let drive = slot.transport.device as? BlockDevice else { continue }
            let inserted = try slot.transport.changeConfiguration { () throws -> Bool in
                // Checked under the transport's lock: two callers cannot fill one slot.
                guard !drive.hasMedium else { return false }
                do {
                    try insert(drive)
                } catch let error as BlockDeviceError {
                    throw VMMError.deviceSetupFailed(error.description)
                }
                return true
            }
            if inserted { return AttachedDrive(index: index, guestName: VirtioDeviceSet.guestDriveName(index)) }
        }
        throw VMMError.noFreeDriveSlot(slots: configuration.driveSlots)
    }

    /// Empties the drive slot at `index` (from `attachDrive`); the guest should have
    /// unmounted it. Emptying an empty slot is not an error.
    public func detachDrive(index: Int) throws {
        let first = configuration.drives.count
        guard index >= first, index < first + configuration.driveSlots,
              let drive = virtio.slots[index].transport.device as? BlockDevice else {
            throw VMMError.notADriveSlot(index: index)
        }
        virtio.slots[index].transport.changeConfiguration { drive.ejectMedium() }
    }

    /// The serial console's interrupt path from UART to vCPU 0: the UART's state, the IOAPIC
    /// pin it drives and the vector's state in the local APIC. For a guest whose console
    /// output stalls (Linux's 8250 driver sends user-space output only on THRE interrupts);
    /// call it while the vCPUs are not running (after `run` returns) for a consistent picture.
    public func serialInterruptDiagnosis() -> String {
        var parts = ["uart: \(serial.interruptState)", "irq line: \(serialLineRecord.description)"]
        do {
            let pin = try machine.ioapicPin(Serial16550.com1Interrupt)
            parts.append("ioapic pin \(Serial16550.com1Interrupt): \(pin)")
            if let vcpu = vcpus.first, pin.vector != 0 {
                let state = try vcpu.localAPICVector(pin.vector)
                parts.append("lapic: irr \(state.requested) isr \(state.inService)")
            }
        } catch {
            parts.append("interrupt controller state unreadable: \(error)")
        }
        return parts.joined(separator: "; ")
    }

    /// How often the event loop looks for a UART interrupt the guest left unserviced, and
    /// how long one may wait before its edge is raised again (`Serial16550.reassertIfUnserviced`).
    static let serialWatchInterval: UInt64 = 250_000_000
    static let serialEdgeTimeout: UInt64 = 500_000_000

    /// Looks at the UART's interrupt line every `serialWatchInterval` until the loop stops.
    static func watchSerialInterrupt(_ serial: Serial16550, on loop: EventLoop) {
        loop.schedule(after: serialWatchInterval) { [weak loop] in
            serial.reassertIfUnserviced(now: EventLoop.now(), timeout: serialEdgeTimeout)
            if let loop { watchSerialInterrupt(serial, on: loop) }
        }
    }

    /// How long available entries must wait, with neither the driver nor the device moving,
    /// before the watch serves them as a lost notification. Longer than a driver's batch of
    /// adds on an emulated guest kernel (kvm_pvm: virtio-vsock's receive fill outlasted
    /// 250 ms under load), far shorter than the minutes a real loss would cost.
    static let lostNotificationTimeout: UInt64 = 1_000_000_000

    /// Looks at every virtio transport every `serialWatchInterval` until the loop stops:
    /// available entries left without a notification for `lostNotificationTimeout` are
    /// served, interrupts left unacknowledged for `serialEdgeTimeout` raised again
    /// (`VirtioMMIOTransport.watch`).
    static func watchVirtioTransports(_ transports: [VirtioMMIOTransport], on loop: EventLoop) {
        loop.schedule(after: serialWatchInterval) { [weak loop] in
            let now = EventLoop.now()
            for transport in transports {
                transport.watch(now: now, notificationTimeout: lostNotificationTimeout, interruptTimeout: serialEdgeTimeout)
            }
            if let loop { watchVirtioTransports(transports, on: loop) }
        }
    }

    /// How often the virtio watch found a driver's available entries waiting with no
    /// notification and served them: each time, a request the guest would have waited on
    /// for good (issue 15, fault 1). Rescued or not, that is a fault; 0 in a healthy run.
    public var lostNotifications: Int {
        virtio.slots.reduce(0) { $0 + $1.transport.watchCounts.servedWithoutNotification }
    }

    /// Descriptors a device closed while the event loop still watched them (its owner
    /// closed before unregistering): the loop dropped them, but until it looked, the number
    /// could have named another file. 0 in a healthy run.
    public var descriptorsClosedWhileWatched: Int { eventLoop.descriptorsClosedWhileWatched }

    /// What the virtio watch rescued, per device that needed it: "" when nothing.
    public func virtioWatchDiagnosis() -> String {
        virtio.slots.enumerated().compactMap { index, slot in
            let counts = slot.transport.watchCounts
            guard !counts.isEmpty else { return nil }
            return "virtio device \(index) (type \(slot.transport.device.deviceType)): \(counts.servedWithoutNotification) "
                + "queue passes without a notification, \(counts.interruptsRaisedAgain) interrupts raised again"
        }.joined(separator: "; ")
    }

    /// Ends the VM from any thread; `run` then returns `.stopped`.
    public func stop() {
        latch.stop(.stopped)
    }

    /// Types `bytes` into the guest's serial console, waiting while the UART's FIFO is full.
    /// Returns false if the VM stopped before everything was delivered.
    @discardableResult
    public func sendConsoleInput(_ bytes: [UInt8]) -> Bool {
        var pending = bytes[...]
        while !pending.isEmpty {
            if latch.isStopped { return false }
            let accepted = serial.enqueueInput(Array(pending))
            pending = pending.dropFirst(accepted)
            if !pending.isEmpty { usleep(1000) }
        }
        return true
    }

    /// Feeds standard input to the UART, waiting while its FIFO is full. Ends at EOF.
    private func startConsoleInput() throws {
        let latch = self.latch
        _ = try HostThread(name: "kasa-console") { [self] in
            var buffer = [UInt8](repeating: 0, count: 256)
            while !latch.isStopped {
                let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { return }
                if !self.sendConsoleInput(Array(buffer[0..<count])) { return }
            }
        }
    }

    private func vcpuLoop(_ vcpu: VCPU) {
        let emulation = EmulationFailureHandler(memory: memory)
        while !latch.isStopped {
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                latch.stop(.failed("vCPU \(vcpu.id): \(error)"))
                return
            }
            switch exit {
            case .portOut(let port, let size, let bytes):
                bus.handleOut(port: port, size: size, bytes: bytes)
            case .portIn(let port, let size, let count):
                vcpu.completePortIn(bus.handleIn(port: port, size: size, count: count))
            case .mmioRead(let address, let length):
                // Unclaimed MMIO reads as zeros.
                vcpu.completeMMIORead(virtio.read(address: address, length: length) ?? [UInt8](repeating: 0, count: length))
            case .mmioWrite(let address, let bytes):
                _ = virtio.write(address: address, bytes: bytes)
            case .interrupted:
                profiler?.sampleIfRequested(vcpu)
                // A pause kicked this vCPU out (the run that returned this completed any
                // I/O it had exited for): wait here until resumed or stopped.
                if vcpuGate.pauseRequested { vcpuGate.park(worker: Int(vcpu.id)) }
                continue
            case .halt:
                latch.stop(.failed("vCPU \(vcpu.id) halted with no interrupt controller to wake it"))
            case .shutdown:
                latch.stop(.tripleFault)
            case .systemEvent(let type):
                latch.stop(.systemEvent(type: type))
            case .internalError(let suberror, let data, let instruction):
                handleInternalError(vcpu: vcpu, emulation: emulation, suberror: suberror, data: data, instruction: instruction)
            case .failedEntry(let reason):
                latch.stop(.failed("vCPU \(vcpu.id): KVM could not enter the guest (hardware reason 0x\(String(reason, radix: 16)))"))
            case .unknown(let reason, let hardware):
                latch.stop(.failed("vCPU \(vcpu.id): unexpected KVM exit \(reason) (hardware reason 0x\(String(hardware, radix: 16)))"))
            }
        }
    }

    private func handleInternalError(vcpu: VCPU, emulation: EmulationFailureHandler, suberror: UInt32, data: [UInt64], instruction: [UInt8]) {
        guard suberror == VCPUExit.emulationFailureSuberror else {
            let words = data.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
            latch.stop(.failed("vCPU \(vcpu.id): KVM internal error, suberror \(suberror), data [\(words)]"))
            return
        }
        do {
            switch try emulation.handle(vcpu: vcpu, reportedBytes: instruction) {
            case .resumed(let opcode):
                assistLock.withLock { assists[opcode, default: 0] += 1 }
            case .unhandled(let bytes, let rip):
                let hex = bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
                latch.stop(.failed("vCPU \(vcpu.id): KVM cannot emulate the instruction at RIP 0x\(String(rip, radix: 16)) (bytes: \(hex.isEmpty ? "unavailable" : hex)); on a kvm_pvm host the guest command line needs the parameters in docs/kvm-pvm.md"))
            }
        } catch {
            latch.stop(.failed("vCPU \(vcpu.id): emulation failure, and reading its state failed: \(error)"))
        }
    }
}

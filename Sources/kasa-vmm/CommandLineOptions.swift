import Confinement
import MachineSize
import VMM

/// kasa-vmm's command line, parsed by hand.
///
/// swift-argument-parser did this before; it cost ~1.5 MiB of resident memory on every
/// start and linked FoundationEssentials into the binary (docs/performance.md, "VMM start
/// to first guest byte"). This parser keeps its flags, aliases and conventions:
///
/// - `--option value` and `--option=value`. In the first form a following argument that
///   begins with `-` (other than `-` alone) is not taken as the value, so a forgotten
///   value does not swallow the next option; `--option=-value` passes such a value.
/// - An option given twice: the last one counts, except the repeatable ones
///   (`--hide-cpu-feature`, `--drive`, `--net`), which collect every value in order.
/// - `-v` and `-h` may be combined (`-vh`).
/// - `-h`/`--help` anywhere (where it is not an option's value) prints the help, even
///   if other arguments are wrong.
///
/// Bad usage throws `UsageError`, whose description is one line; `KasaVMM` prints it as
/// `kasa-vmm: error: <description>` and exits 2, like any other bad input.
struct CommandLineOptions {
    var configFile: String?
    var kernel: String?
    var initrd: String?
    var cmdline: String?
    var memory: UInt64?
    var vcpus: Int?
    var console: String?
    var noStandardInput = false
    var parentPID: Int32?
    var hiddenFeatures: [String] = []
    var pvmCompatibility: PVMCompatibility?
    var drives: [String] = []
    var networks: [String] = []
    var sharedDirectories: [String] = []
    var driveSlots: Int?
    var apiSocket: String?
    var restore: String?
    var profile: String?
    var profileInterval: Int?
    var entropy = false
    var vsockPath: String?
    var vsockCID: UInt64?
    var noPVH = false
    var seccomp: SeccompMode = .kill
    var jail: String?
    var jailPaths: [JailPath] = []
    /// `--user UID:GID`: the unprivileged user the VMM becomes after its jail.
    var user: (uid: UInt32, gid: UInt32)?
    var verbose = false
    var showHelp = false
    var showVersion = false

    static let version = "0.1.0-dev"

    enum Key {
        case configFile, kernel, initrd, cmdline, memory, vcpus, console, noStandardInput, parentPID
        case hideCPUFeature, pvmCompatibility, drive, driveSlots, apiSocket, entropy, vsockPath, vsockCID, network, noPVH, sharedDirectory, seccomp
        case jail, jailPath, jailPathWritable, user
        case restore, profile, profileInterval, verbose, help, version
    }

    struct Option {
        let key: Key
        /// Long names without the leading `--`; the first is the one error messages use.
        let names: [String]
        let short: Character?
        /// nil for a flag (no value).
        let valueName: String?
        let help: String

        var takesNumber: Bool {
            key == .memory || key == .vcpus || key == .vsockCID || key == .parentPID || key == .driveSlots || key == .profileInterval
        }

        /// `--memory <MiB>`: how an error message names the option.
        var display: String {
            "--\(names[0])" + (valueName.map { " <\($0)>" } ?? "")
        }
    }

    /// Every option, in the order `--help` lists them.
    static let options: [Option] = [
        Option(key: .configFile, names: ["config-file"], short: nil, valueName: "path",
               help: "Firecracker-style JSON configuration."),
        Option(key: .kernel, names: ["kernel"], short: nil, valueName: "path",
               help: "Guest kernel: ELF vmlinux or bzImage."),
        Option(key: .initrd, names: ["initrd"], short: nil, valueName: "path",
               help: "Initial ramdisk (cpio, optionally compressed)."),
        Option(key: .cmdline, names: ["cmdline", "boot-args"], short: nil, valueName: "args",
               help: "Kernel command line (default: \"\(VMConfiguration.defaultCommandLine)\")."),
        Option(key: .memory, names: ["memory", "mem-size-mib"], short: nil, valueName: "MiB",
               help: "Guest memory in MiB (default \(MachineSize.vmmDefaultMemoryMiB))."),
        Option(key: .vcpus, names: ["vcpus", "vcpu-count"], short: nil, valueName: "n",
               help: "Number of vCPUs (default 1)."),
        Option(key: .console, names: ["console"], short: nil, valueName: "stdout|none|path",
               help: "Serial console destination: stdout, none, or a file path (default stdout)."),
        Option(key: .noStandardInput, names: ["no-stdin"], short: nil, valueName: nil,
               help: "Do not forward standard input to the guest console."),
        Option(key: .parentPID, names: ["parent-pid"], short: nil, valueName: "pid",
               help: "Exit (SIGKILL) when process <pid>, which started this VMM, dies; refuse to start if it already has."),
        Option(key: .hideCPUFeature, names: ["hide-cpu-feature"], short: nil, valueName: "name",
               help: "Hide a CPUID feature from the guest (repeatable), e.g. avx512f."),
        Option(key: .pvmCompatibility, names: ["pvm-compat"], short: nil, valueName: "auto|on|off",
               help: "Add the kvm_pvm guest command line: auto (when /dev/kvm is kvm_pvm; the default), on, off."),
        Option(key: .drive, names: ["drive"], short: nil, valueName: "spec",
               help: "A virtio-blk disk (repeatable): path=FILE[,readonly=on|off][,root=on|off][,id=NAME]. "
                   + "Drives become vda, vdb, ... in order."),
        Option(key: .driveSlots, names: ["drive-slots"], short: nil, valueName: "n",
               help: "Add n empty read-only virtio-blk drives after the --drive ones, filled while the guest runs through --api-socket."),
        Option(key: .apiSocket, names: ["api-socket"], short: nil, valueName: "path",
               help: "Serve a control socket (JSON lines: attach-drive, detach-drive, pause, resume, snapshot) at this path."),
        Option(key: .restore, names: ["restore"], short: nil, valueName: "dir",
               help: "Continue the VM saved in this snapshot directory instead of booting a kernel. Takes the clone's own "
                   + "--vsock-uds, --net, --shared-dir (the snapshot's tags, in order), --console, --api-socket; the "
                   + "snapshot fixes everything else."),
        Option(key: .entropy, names: ["rng"], short: nil, valueName: nil,
               help: "Add a virtio-rng device fed by the host's getrandom."),
        Option(key: .vsockPath, names: ["vsock-uds"], short: nil, valueName: "path",
               help: "Add a virtio-vsock device bridged to this Unix socket (hybrid vsock: connect, send 'CONNECT <port>\\n')."),
        Option(key: .vsockCID, names: ["vsock-cid"], short: nil, valueName: "cid",
               help: "The guest's vsock context id (default 3)."),
        Option(key: .network, names: ["net"], short: nil, valueName: "spec",
               help: "A virtio-net interface (repeatable): tap=NAME|fd=N|unplugged[,mac=02:..:..][,mtu=1500]. tap= opens "
                   + "(or creates) the TAP in this network namespace; fd= takes one the caller opened with "
                   + "IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; unplugged has no host side (a template's NIC slot: its clones get "
                   + "a TAP). The guest sees eth0, eth1, ... in order; without mac= it gets a random local one."),
        Option(key: .sharedDirectory, names: ["shared-dir"], short: nil, valueName: "spec",
               help: "A host directory served over virtio-fs (repeatable): tag=TAG,path=DIR, optionally with "
                   + ",readonly=on|off and ,cache=never|auto|always (default auto). The guest mounts it with "
                   + "'mount -t virtiofs TAG /mnt'."),
        Option(key: .profile, names: ["profile"], short: nil, valueName: "path",
               help: "Sample where each vCPU is (kernel RIP, or user space) and write the counts here when the VM ends "
                   + "(bench/guest-profile symbolizes them). Without it, $KASA_VMM_PROFILE=PREFIX profiles to PREFIX.<pid>."),
        Option(key: .profileInterval, names: ["profile-interval-us"], short: nil, valueName: "us",
               help: "Microseconds between samples of each vCPU (default \(VMConfiguration.defaultProfileIntervalMicroseconds), at least 100)."),
        Option(key: .noPVH, names: ["no-pvh"], short: nil, valueName: nil,
               help: "Enter an ELF kernel through its 64-bit entry even if it has a PVH entry."),
        Option(key: .seccomp, names: ["seccomp"], short: nil, valueName: "mode",
               help: "After set-up each thread keeps only the system calls its role needs (seccomp) and no "
                   + "capabilities it does not use. kill (default): any other call kills the VMM; log: it fails "
                   + "with ENOSYS and is named on standard error (development); off: no filters."),
        Option(key: .jail, names: ["jail"], short: nil, valueName: "dir",
               help: "Run in a mount namespace of its own whose root (a tmpfs on this empty directory, seen only by "
                   + "the VMM) holds only the paths the VM uses, at their own paths, /dev/kvm and /dev/net/tun; made at "
                   + "start, before any thread."),
        Option(key: .jailPath, names: ["jail-path"], short: nil, valueName: "path",
               help: "With --jail, also keep this path, read-only (repeatable): what the control socket will name later."),
        Option(key: .jailPathWritable, names: ["jail-path-writable"], short: nil, valueName: "path",
               help: "With --jail, also keep this path writable (repeatable): a snapshot's destination."),
        Option(key: .user, names: ["user"], short: nil, valueName: "uid:gid",
               help: "After the jail, run as this user and group (numbers, not 0; no supplementary groups). Set-up "
                   + "keeps root's capabilities to open what it needs; then each thread drops them (virtio-fs workers "
                   + "keep the five file ones), so nothing after set-up acts as root. Drives for slots then come as "
                   + "descriptors over the control socket, and a snapshot's directory must be the user's."),
        Option(key: .verbose, names: ["verbose"], short: "v", valueName: nil,
               help: "Describe the VM on standard error before booting."),
        Option(key: .help, names: ["help"], short: "h", valueName: nil,
               help: "Show this help and exit."),
        Option(key: .version, names: ["version"], short: nil, valueName: nil,
               help: "Show the version and exit."),
    ]

    /// `UID:GID`, both numbers and neither 0 (root is what --user leaves).
    static func userAndGroup(_ value: String, for option: Option) throws(UsageError) -> (uid: UInt32, gid: UInt32) {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let uid = UInt32(parts[0]), let gid = UInt32(parts[1]),
              uid != 0, gid != 0, uid != UInt32.max, gid != UInt32.max else {
            throw UsageError("invalid value '\(value)' for \(option.display): use UID:GID, two numbers other than 0 (names are the runtime's to resolve)")
        }
        return (uid, gid)
    }

    static func option(named name: String) -> Option? {
        options.first { $0.names.contains(name) }
    }

    static func option(short: Character) -> Option? {
        options.first { $0.short == short }
    }

    // MARK: Parsing

    static func parse(_ arguments: [String]) throws(UsageError) -> CommandLineOptions {
        var parsed = CommandLineOptions()
        // The first mistake is reported, but only after every argument has been looked at,
        // so that --help still wins.
        var firstError: UsageError?
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            do throws(UsageError) {
                if argument == "--" {
                    // The conventional end of options; kasa-vmm takes no other arguments.
                    if index < arguments.count { throw unexpected(arguments[index]) }
                } else if argument.hasPrefix("--") {
                    let body = argument.dropFirst(2)
                    let name: String, inlineValue: String?
                    if let equals = body.firstIndex(of: "=") {
                        name = String(body[..<equals])
                        inlineValue = String(body[body.index(after: equals)...])
                    } else {
                        name = String(body)
                        inlineValue = nil
                    }
                    guard let option = option(named: name) else { throw unknownOption("--" + name) }
                    if option.valueName == nil {
                        if inlineValue != nil { throw UsageError("\(option.display) does not take a value") }
                        parsed.set(option.key)
                    } else if let value = inlineValue {
                        try parsed.set(option, value)
                    } else if index < arguments.count, !looksLikeAnOption(arguments[index]) {
                        try parsed.set(option, arguments[index])
                        index += 1
                    } else {
                        throw missingValue(option, next: index < arguments.count ? arguments[index] : nil)
                    }
                } else if argument.hasPrefix("-") && argument.count > 1 {
                    // Short flags, alone or combined: -v, -h, -vh.
                    for character in argument.dropFirst() {
                        guard let option = option(short: character) else {
                            if argument.count == 2 { throw unknownOption(argument) }
                            throw UsageError("unknown option '-\(character)' in '\(argument)' (see kasa-vmm --help)")
                        }
                        parsed.set(option.key)
                    }
                } else {
                    throw unexpected(argument)
                }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError, !parsed.showHelp, !parsed.showVersion { throw firstError }
        if parsed.user != nil && parsed.seccomp == .off && !parsed.showHelp && !parsed.showVersion {
            // Set-up keeps root's capabilities; only the per-thread drop that comes with the
            // filters takes them away: without it every thread would keep them.
            throw UsageError("--user cannot be combined with --seccomp off (nothing would drop the capabilities set-up keeps)")
        }
        return parsed
    }

    /// A following argument that is taken as an option rather than as a value.
    static func looksLikeAnOption(_ argument: String) -> Bool {
        argument.hasPrefix("-") && argument != "-"
    }

    mutating func set(_ flag: Key) {
        switch flag {
        case .noStandardInput: noStandardInput = true
        case .entropy: entropy = true
        case .noPVH: noPVH = true
        case .verbose: verbose = true
        case .help: showHelp = true
        case .version: showVersion = true
        default: break  // options with a value go through set(_:_:)
        }
    }

    mutating func set(_ option: Option, _ value: String) throws(UsageError) {
        switch option.key {
        case .configFile: configFile = value
        case .kernel: kernel = value
        case .initrd: initrd = value
        case .cmdline: cmdline = value
        case .memory: memory = try Self.number(value, for: option)
        case .vcpus: vcpus = try Self.number(value, for: option)
        case .console: console = value
        case .hideCPUFeature: hiddenFeatures.append(value)
        case .pvmCompatibility:
            guard let choice = PVMCompatibility(rawValue: value) else {
                throw UsageError("invalid value '\(value)' for \(option.display): use auto, on or off")
            }
            pvmCompatibility = choice
        case .seccomp:
            guard let mode = SeccompMode(rawValue: value) else {
                throw UsageError("invalid value '\(value)' for \(option.display): use kill, log or off")
            }
            seccomp = mode
        case .jail: jail = value
        case .jailPath: jailPaths.append(JailPath(value, writable: false))
        case .jailPathWritable: jailPaths.append(JailPath(value, writable: true))
        case .user: user = try Self.userAndGroup(value, for: option)
        case .drive: drives.append(value)
        case .network: networks.append(value)
        case .sharedDirectory: sharedDirectories.append(value)
        case .driveSlots: driveSlots = try Self.number(value, for: option)
        case .apiSocket: apiSocket = value
        case .restore: restore = value
        case .profile: profile = value
        case .profileInterval: profileInterval = try Self.number(value, for: option)
        case .vsockPath: vsockPath = value
        case .vsockCID: vsockCID = try Self.number(value, for: option)
        case .parentPID: parentPID = try Self.number(value, for: option)
        default: break  // flags go through set(_:)
        }
    }

    /// A decimal number, as Swift's `Int("...")` reads it (an optional sign, then digits).
    static func number<Number: FixedWidthInteger>(_ text: String, for option: Option) throws(UsageError) -> Number {
        if let number = Number(text) { return number }
        if text.isEmpty { throw missingValue(option, next: nil) }
        let digits = text.first == "+" || text.first == "-" ? text.dropFirst() : Substring(text)
        if !digits.isEmpty && digits.allSatisfy({ $0 >= "0" && $0 <= "9" }) {
            let reason = text.first == "-" && Number.min == 0 ? "must not be negative" : "out of range"
            throw UsageError("invalid value '\(text)' for \(option.display): \(reason)")
        }
        throw UsageError("invalid value '\(text)' for \(option.display): not a decimal number")
    }

    // MARK: Errors

    static func missingValue(_ option: Option, next: String?) -> UsageError {
        var message = "missing value for \(option.display)"
        if let next, !isKnownOption(next), !option.takesNumber {
            message += " (write --\(option.names[0])=\(next) for a value that begins with '-')"
        }
        return UsageError(message)
    }

    static func isKnownOption(_ argument: String) -> Bool {
        if argument.hasPrefix("--") {
            let name = argument.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            return option(named: String(name)) != nil
        }
        return argument.count > 1 && argument.dropFirst().allSatisfy { option(short: $0) != nil }
    }

    static func unexpected(_ argument: String) -> UsageError {
        UsageError("unexpected argument '\(argument)': kasa-vmm takes only options (see kasa-vmm --help)")
    }

    static func unknownOption(_ spelling: String) -> UsageError {
        var message = "unknown option '\(spelling)'"
        if spelling.hasPrefix("--"), let suggestion = suggestion(for: String(spelling.dropFirst(2))) {
            message += "; did you mean '--\(suggestion)'?"
        } else {
            message += " (see kasa-vmm --help)"
        }
        return UsageError(message)
    }

    /// The long name closest to a mistyped one: a unique name it is the start of
    /// (`--ker`), else one at most two edits away (`--kernl`, `--Kernel`).
    static func suggestion(for typed: String) -> String? {
        let lowered = typed.lowercased()
        let names = options.flatMap(\.names)
        let extensions = names.filter { $0.hasPrefix(lowered) }
        if lowered.count >= 2, extensions.count == 1 { return extensions[0] }
        var best: (name: String, distance: Int)?
        for name in names {
            let distance = editDistance(Array(lowered.utf8), Array(name.utf8))
            if distance <= 2, distance < (best?.distance ?? .max) { best = (name, distance) }
        }
        return best?.name
    }

    /// Levenshtein distance (insertions, deletions, substitutions).
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty else { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1,
                                 previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    // MARK: Help

    static var helpText: String {
        var text = """
            OVERVIEW: Boot a Linux kernel in a KVM microVM.

            Boots an uncompressed ELF vmlinux (PVH entry when present, else its 64-bit
            entry) or a bzImage with an optional initrd. The guest's serial console (COM1,
            ttyS0) goes to standard output or a file.

            A Firecracker-style JSON file can carry the same settings:
              {"boot-source": {"kernel_image_path": "vmlinux",
                               "initrd_path": "initrd.cpio",
                               "boot_args": "console=ttyS0 reboot=k panic=1"},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
               "console": "stdout"}
            Flags given on the command line override the file; "drives", "entropy",
            "vsock" and "network-interfaces" take Firecracker's keys (path_on_host,
            is_read_only, is_root_device; guest_cid, uds_path; iface_id, host_dev_name,
            guest_mac; and Kasa's mtu).

            USAGE: kasa-vmm --kernel <path> [<options>]
                   kasa-vmm --config-file <path> [<options>]
                   kasa-vmm --restore <dir> [--vsock-uds <path>] [--net <spec>]
                            [--shared-dir <spec>] [--console <c>] [--api-socket <path>]

            OPTIONS:

            """
        let column = 26
        for option in options {
            var names = option.names.map { "--" + $0 }
            if let short = option.short { names.insert("-\(short)", at: 0) }
            var heading = "  " + names.joined(separator: ", ")
            if let valueName = option.valueName { heading += " <\(valueName)>" }
            let lines = wrap(option.help, width: 80 - column)
            if heading.count < column - 1 {
                text += heading + String(repeating: " ", count: column - heading.count) + lines[0] + "\n"
                for line in lines.dropFirst() { text += String(repeating: " ", count: column) + line + "\n" }
            } else {
                text += heading + "\n"
                for line in lines { text += String(repeating: " ", count: column) + line + "\n" }
            }
        }
        text += """

            An option's value may follow it (--memory 256) or be joined with '='
            (--memory=256); write the second form for a value that begins with '-'.
            Given twice, an option's last value counts, except for the repeatable ones.

            EXIT STATUS:
              0  the guest reset (Linux: reboot=k, as in the default command line)
              1  the VM failed
              2  bad input (command line, configuration file, kernel, initrd, memory or
                 vCPU count, devices) or KVM not available

            """
        return text
    }

    /// Words of `text` on lines of at most `width` characters (a longer word gets its own line).
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        lines.append(line)
        return lines
    }
}

/// Bad usage of the command line; the description is one line.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

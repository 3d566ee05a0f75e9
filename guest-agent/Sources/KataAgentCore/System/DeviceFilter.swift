import AgentProtocol
import CAgentLinux
#if canImport(Glibc)
import Glibc
#endif

/// A container's `linux.resources.devices` rules, enforced the cgroup v2 way: a BPF program
/// of type CGROUP_DEVICE attached to the container's cgroup, which the kernel asks at every
/// mknod and every open of a device node by a process in that cgroup. Without it a
/// container with CAP_MKNOD (Docker's and containerd's default set) could make a node for
/// the VM's own disks (the pod's other containers' root filesystems) and open it.
///
/// As in cgroup v1, the last rule that matches decides, a request no rule matches is
/// refused, and type `a` means every device (its numbers ignored). An allow rule matches
/// when it grants every access asked for; a deny rule when it names any of them. The
/// device nodes every container's /dev needs are allowed after the spec's
/// rules, and so is mknod (not open) of any node, as runc does. A spec without rules gets
/// no program (nothing restricted). Where rules are unusual this is stricter than cgroup
/// v1, never looser: rules do not add up (an open for read and write needs one rule that
/// grants both) and a deny rule refuses any access it names.
enum DeviceFilter {
    /// One rule in the kernel's terms (nil matches any).
    struct Rule: Equatable, Sendable {
        var allow: Bool
        var type: UInt32?
        var major: UInt32?
        var minor: UInt32?
        /// `access` bits: mknod, read, write.
        var access: UInt32
    }

    // bpf_cgroup_dev_ctx's values (include/uapi/linux/bpf.h).
    static let blockDevice: UInt32 = 1, charDevice: UInt32 = 2
    static let mknodAccess: UInt32 = 1, readAccess: UInt32 = 2, writeAccess: UInt32 = 4
    static let allAccess = mknodAccess | readAccess | writeAccess

    /// The nodes ContainerRootfs makes in /dev (null, zero, full, random, urandom, tty),
    /// devpts's ptmx (5:2, /dev/ptmx links to it) and the container's ptys (major 136;
    /// its /dev/console is one); then mknod, and only mknod, of any node (runc's default).
    /// Not 5:1, the guest's own console: the host reads what is written there.
    static let standardDevices: [Rule] = (ContainerRootfs.deviceNodes.map { ($0.major, $0.minor) } + [(5, 2)])
        .map { Rule(allow: true, type: charDevice, major: $0.0, minor: $0.1, access: allAccess) }
        + [Rule(allow: true, type: charDevice, major: 136, minor: nil, access: allAccess),
           Rule(allow: true, type: charDevice, major: nil, minor: nil, access: mknodAccess),
           Rule(allow: true, type: blockDevice, major: nil, minor: nil, access: mknodAccess)]

    /// The spec's rules in kernel terms, the standard devices after them; empty when the
    /// spec has none. Bad input (a type, access letter or number out of range) is refused.
    static func rules(from spec: [OCISpec.Resources.DeviceRule]?) throws(AgentError) -> [Rule] {
        guard let spec, !spec.isEmpty else { return [] }
        var rules: [Rule] = []
        for (index, rule) in spec.enumerated() {
            let place = "linux.resources.devices[\(index)]"
            let type: UInt32?
            switch rule.type ?? "a" {
            case "a": type = nil
            case "c": type = charDevice
            case "b": type = blockDevice
            case let other: throw AgentError(.invalidArgument, "\(place).type: must be a, b or c, not \(other.debugDescription)")
            }
            var access: UInt32 = 0
            for letter in rule.access ?? "rwm" {
                switch letter {
                case "r": access |= readAccess
                case "w": access |= writeAccess
                case "m": access |= mknodAccess
                default: throw AgentError(.invalidArgument, "\(place).access: letters of rwm only, not \((rule.access ?? "").debugDescription)")
                }
            }
            func number(_ value: Int64?, _ name: String) throws(AgentError) -> UInt32? {
                guard let value, value != -1 else { return nil }
                guard let number = UInt32(exactly: value) else {
                    throw AgentError(.invalidArgument, "\(place).\(name): \(value) is not a device number")
                }
                return number
            }
            let major = try number(rule.major, "major"), minor = try number(rule.minor, "minor")
            // Type a is every device: cgroup v1 ignores its numbers.
            rules.append(Rule(allow: rule.allow, type: type, major: type == nil ? nil : major,
                              minor: type == nil ? nil : minor, access: access))
        }
        return rules + standardDevices
    }

    /// The program: the context's fields into registers, then one block per rule, last rule
    /// first, each returning its decision when every test in it passes; refuse at the end.
    static func program(for rules: [Rule]) -> [BPFInstruction] {
        typealias I = BPFInstruction
        // r1: the context. r2: access_type; r3: its device type (low 16 bits); r4: its
        // access bits (high 16); r5: major; r6: minor; r7: scratch.
        var program: [I] = [
            .loadWord(into: 2, from: 1, offset: 0),
            .move(into: 3, from: 2), .and(3, 0xffff),
            .move(into: 4, from: 2), .shiftRight(4, 16),
            .loadWord(into: 5, from: 1, offset: 4),
            .loadWord(into: 6, from: 1, offset: 8),
        ]
        for rule in rules.reversed() {
            // Each test jumps past the block's end when it fails: offsets are filled in
            // once the block's length is known (marked with Int16.min meanwhile).
            var block: [I] = []
            if let type = rule.type { block.append(.jumpIfNotEqual(3, type)) }
            if rule.access != allAccess {
                block.append(.move(into: 7, from: 4))
                if rule.allow {
                    // Every access asked for is granted: nothing outside the rule's bits.
                    block.append(.and(7, Int32(bitPattern: ~rule.access & allAccess)))
                    block.append(.jumpIfNotEqual(7, 0))
                } else {
                    // Any access asked for is refused by it.
                    block.append(.and(7, Int32(bitPattern: rule.access)))
                    block.append(.jumpIfEqual(7, 0))
                }
            }
            if let major = rule.major { block.append(.jumpIfNotEqual(5, major)) }
            if let minor = rule.minor { block.append(.jumpIfNotEqual(6, minor)) }
            block.append(.moveImmediate(into: 0, rule.allow ? 1 : 0))
            block.append(.exit)
            for index in block.indices where block[index].isUnresolvedJump {
                block[index].offset = Int16(block.count - 1 - index)
            }
            program += block
            // A rule that matches everything decides every request that gets this far:
            // what would follow is unreachable, which the kernel's verifier refuses.
            if block.count == 2 { return program }
        }
        program += [.moveImmediate(into: 0, 0), .exit]
        return program
    }

    /// Loads the program for `rules` and attaches it to the cgroup directory at `path`
    /// (BPF_F_ALLOW_MULTI: one above it, if any, must allow too), in place of `replacing`
    /// (a program this returned for the same cgroup: BPF_F_REPLACE swaps them at once, so
    /// no request meets both or neither). Returns the program's descriptor (close-on-exec),
    /// which the caller keeps for the next replacement; nil for no rules (nothing attached).
    static func attach(_ rules: [Rule], toCgroup path: String, replacing: Int32? = nil) throws(AgentError) -> Int32? {
        guard !rules.isEmpty else { return nil }
        let instructions = program(for: rules).flatMap(\.bytes)
        let cgroup = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard cgroup >= 0 else { throw AgentError(.internal, "cannot open cgroup \(path): \(String(cString: strerror(errno)))") }
        defer { close(cgroup) }
        let (programDescriptor, _) = load(instructions, withLog: false)
        if programDescriptor < 0 {
            // Again with the verifier's account (a log too small for it fails the load).
            let reason = errno
            let (again, verifier) = load(instructions, withLog: true)
            // It may load this time (the first failure passing): that program is not used.
            if again >= 0 { close(Int32(again)) }
            // A guest kernel built without BPF_SYSCALL and CGROUP_BPF cannot enforce the
            // rules: the container is refused rather than started unrestricted.
            let kernel = reason == ENOSYS || reason == EINVAL && verifier.isEmpty
                ? " (the guest kernel needs CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF to enforce linux.resources.devices)" : ""
            throw AgentError(.internal, "cannot load the device filter for \(path): \(String(cString: strerror(reason)))\(kernel)"
                                        + (verifier.isEmpty ? "" : " (\(verifier.suffix(300)))"))
        }
        var attachAttributes = [UInt8](repeating: 0, count: 32)
        let attached = attachAttributes.withUnsafeMutableBytes { attributes -> Int in
            attributes.storeBytes(of: UInt32(cgroup), toByteOffset: 0, as: UInt32.self)  // target_fd
            attributes.storeBytes(of: UInt32(programDescriptor), toByteOffset: 4, as: UInt32.self)
            attributes.storeBytes(of: 6, toByteOffset: 8, as: UInt32.self)  // BPF_CGROUP_DEVICE
            // BPF_F_ALLOW_MULTI, with BPF_F_REPLACE and replace_bpf_fd for an update.
            attributes.storeBytes(of: replacing == nil ? 2 : 2 | 4, toByteOffset: 12, as: UInt32.self)
            if let replacing { attributes.storeBytes(of: UInt32(replacing), toByteOffset: 16, as: UInt32.self) }
            return kasa_bpf(8, attributes.baseAddress, UInt32(attributes.count))  // BPF_PROG_ATTACH
        }
        guard attached == 0 else {
            let reason = String(cString: strerror(errno))
            close(Int32(programDescriptor))
            throw AgentError(.internal, "cannot attach the device filter to \(path): \(reason)")
        }
        return Int32(programDescriptor)
    }
}

extension DeviceFilter {
    /// BPF_PROG_LOAD of a CGROUP_DEVICE program: the descriptor (or -1, errno set) and,
    /// with `withLog`, what the verifier said.
    static func load(_ instructions: [UInt8], withLog: Bool) -> (descriptor: Int, log: String) {
        var log = [UInt8](repeating: 0, count: withLog ? 1 << 16 : 0)
        let license = Array("Apache-2.0".utf8CString)
        var attributes = [UInt8](repeating: 0, count: 128)
        let descriptor = instructions.withUnsafeBytes { code in
            license.withUnsafeBytes { licenseBytes in
                log.withUnsafeMutableBytes { logBytes in
                    attributes.withUnsafeMutableBytes { attributes -> Int in
                        // union bpf_attr for BPF_PROG_LOAD; the pointers live through the call.
                        attributes.storeBytes(of: 15, toByteOffset: 0, as: UInt32.self)  // BPF_PROG_TYPE_CGROUP_DEVICE
                        attributes.storeBytes(of: UInt32(code.count / 8), toByteOffset: 4, as: UInt32.self)
                        attributes.storeBytes(of: UInt64(UInt(bitPattern: code.baseAddress)), toByteOffset: 8, as: UInt64.self)
                        attributes.storeBytes(of: UInt64(UInt(bitPattern: licenseBytes.baseAddress)), toByteOffset: 16, as: UInt64.self)
                        if withLog {
                            attributes.storeBytes(of: 1, toByteOffset: 24, as: UInt32.self)  // log_level
                            attributes.storeBytes(of: UInt32(logBytes.count), toByteOffset: 28, as: UInt32.self)
                            attributes.storeBytes(of: UInt64(UInt(bitPattern: logBytes.baseAddress)), toByteOffset: 32, as: UInt64.self)
                        }
                        for (offset, byte) in "kasa_devices".utf8.enumerated() { attributes[48 + offset] = byte }
                        return kasa_bpf(5, attributes.baseAddress, UInt32(attributes.count))  // BPF_PROG_LOAD
                    }
                }
            }
        }
        let saved = errno
        defer { errno = saved }
        return (descriptor, String(decoding: log.prefix { $0 != 0 }, as: UTF8.self))
    }
}

/// One eBPF instruction (struct bpf_insn): opcode, destination and source registers (low
/// and high nibble), a jump offset and an immediate. Only what DeviceFilter emits.
struct BPFInstruction: Equatable, Sendable {
    var code: UInt8
    var destination: UInt8
    var source: UInt8 = 0
    var offset: Int16 = 0
    var immediate: Int32 = 0

    /// The 8 bytes the kernel reads (little-endian).
    var bytes: [UInt8] {
        let offsetBits = UInt16(bitPattern: offset), immediateBits = UInt32(bitPattern: immediate)
        return [code, (source << 4) | (destination & 0x0f), UInt8(offsetBits & 0xff), UInt8(offsetBits >> 8),
                UInt8(immediateBits & 0xff), UInt8((immediateBits >> 8) & 0xff), UInt8((immediateBits >> 16) & 0xff), UInt8(immediateBits >> 24)]
    }

    // Opcodes: class | operation | source (include/uapi/linux/bpf.h, bpf_common.h).
    static let loadWordCode: UInt8 = 0x61       // BPF_LDX | BPF_MEM | BPF_W
    static let moveRegisterCode: UInt8 = 0xbf   // BPF_ALU64 | BPF_MOV | BPF_X
    static let moveImmediateCode: UInt8 = 0xb7  // BPF_ALU64 | BPF_MOV | BPF_K
    static let andCode: UInt8 = 0x57            // BPF_ALU64 | BPF_AND | BPF_K
    static let shiftRightCode: UInt8 = 0x77     // BPF_ALU64 | BPF_RSH | BPF_K
    static let jumpNotEqualCode: UInt8 = 0x56   // BPF_JMP32 | BPF_JNE | BPF_K
    static let jumpEqualCode: UInt8 = 0x16      // BPF_JMP32 | BPF_JEQ | BPF_K
    static let exitCode: UInt8 = 0x95           // BPF_JMP | BPF_EXIT

    static func loadWord(into destination: UInt8, from source: UInt8, offset: Int16) -> Self {
        Self(code: loadWordCode, destination: destination, source: source, offset: offset)
    }
    static func move(into destination: UInt8, from source: UInt8) -> Self {
        Self(code: moveRegisterCode, destination: destination, source: source)
    }
    static func moveImmediate(into destination: UInt8, _ value: Int32) -> Self {
        Self(code: moveImmediateCode, destination: destination, immediate: value)
    }
    static func and(_ register: UInt8, _ mask: Int32) -> Self { Self(code: andCode, destination: register, immediate: mask) }
    static func shiftRight(_ register: UInt8, _ bits: Int32) -> Self { Self(code: shiftRightCode, destination: register, immediate: bits) }
    /// 32-bit compares (JMP32): the context's fields are u32, and an immediate is too.
    static func jumpIfNotEqual(_ register: UInt8, _ value: UInt32) -> Self {
        Self(code: jumpNotEqualCode, destination: register, offset: .min, immediate: Int32(bitPattern: value))
    }
    static func jumpIfEqual(_ register: UInt8, _ value: UInt32) -> Self {
        Self(code: jumpEqualCode, destination: register, offset: .min, immediate: Int32(bitPattern: value))
    }
    static let exit = Self(code: exitCode, destination: 0)

    var isUnresolvedJump: Bool { (code == Self.jumpNotEqualCode || code == Self.jumpEqualCode) && offset == .min }
}

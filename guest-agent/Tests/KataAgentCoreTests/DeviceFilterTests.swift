import Foundation
import Testing
@testable import KataAgentCore
#if canImport(Glibc)
import Glibc
#endif

/// `linux.resources.devices` as the guest kernel enforces it: the rules parsed, the BPF
/// program run through an interpreter of the instructions it uses and compared with the
/// rules' meaning, and the program loaded into this host's kernel and attached to a real
/// cgroup, where a process in it is refused a device the rules do not allow.
@Suite struct DeviceFilterTests {
    typealias F = DeviceFilter
    typealias Rule = OCISpec.Resources.DeviceRule

    /// What containerd's default spec carries (deny everything, then the usual nodes).
    static let containerdDefault: [Rule] = [
        Rule(allow: false, access: "rwm"),
        Rule(allow: true, type: "c", major: 1, minor: 3, access: "rwm"),
        Rule(allow: true, type: "c", major: 1, minor: 8, access: "rwm"),
        Rule(allow: true, type: "c", major: 136, minor: -1, access: "rwm"),
        Rule(allow: true, type: "c", major: 10, minor: 200, access: "rwm"),
    ]

    /// The program's result for one request, by an interpreter of the instructions the
    /// filter emits (any other opcode, or a jump out of the program, fails the test).
    static func run(_ program: [BPFInstruction], type: UInt32, access: UInt32, major: UInt32, minor: UInt32) -> UInt64? {
        let context: [UInt32] = [access << 16 | type, major, minor]
        var registers = [UInt64](repeating: 0, count: 11)
        var counter = 0
        while program.indices.contains(counter) {
            let instruction = program[counter]
            counter += 1
            let destination = Int(instruction.destination), source = Int(instruction.source)
            switch instruction.code {
            case BPFInstruction.loadWordCode:
                guard source == 1, instruction.offset >= 0, instruction.offset % 4 == 0,
                      context.indices.contains(Int(instruction.offset) / 4) else { return nil }
                registers[destination] = UInt64(context[Int(instruction.offset) / 4])
            case BPFInstruction.moveRegisterCode: registers[destination] = registers[source]
            case BPFInstruction.moveImmediateCode: registers[destination] = UInt64(bitPattern: Int64(instruction.immediate))
            case BPFInstruction.andCode: registers[destination] &= UInt64(bitPattern: Int64(instruction.immediate))
            case BPFInstruction.shiftRightCode: registers[destination] >>= UInt64(instruction.immediate)
            case BPFInstruction.jumpNotEqualCode, BPFInstruction.jumpEqualCode:
                guard instruction.offset >= 0 else { return nil }
                let equal = UInt32(truncatingIfNeeded: registers[destination]) == UInt32(bitPattern: instruction.immediate)
                if equal == (instruction.code == BPFInstruction.jumpEqualCode) { counter += Int(instruction.offset) }
            case BPFInstruction.exitCode: return registers[0]
            default: return nil
            }
        }
        return nil
    }

    @Test func rulesAreReadWithTheStandardNodesAfterThem() throws {
        let rules = try F.rules(from: Self.containerdDefault)
        #expect(rules.first == F.Rule(allow: false, type: nil, major: nil, minor: nil, access: F.allAccess))
        #expect(rules[3] == F.Rule(allow: true, type: F.charDevice, major: 136, minor: nil, access: F.allAccess), "-1 is any minor")
        #expect(Array(rules.suffix(F.standardDevices.count)) == F.standardDevices)
        #expect(try F.rules(from: nil).isEmpty && F.rules(from: []).isEmpty, "no rules: no filter")
        #expect(try F.rules(from: [Rule(allow: true, type: "b", major: 8, access: "r")]).first?.access == F.readAccess)
    }

    @Test func badRulesAreRefusedWithTheirPlace() {
        for (rule, words) in [(Rule(allow: true, type: "x"), "devices[0].type"), (Rule(allow: true, access: "rwx"), "devices[0].access"),
                              (Rule(allow: true, major: -2), "devices[0].major"), (Rule(allow: true, minor: 1 << 40), "devices[0].minor")] {
            #expect(throws: AgentError.self, "\(rule)") { try F.rules(from: [rule]) }
            do { _ = try F.rules(from: [rule]) } catch { #expect("\(error)".contains(words), "\(error)") }
        }
    }

    /// containerd's rules: the VM's disks (block 254) and unlisted char devices cannot be
    /// opened (a node may be made, as under runc); the listed and standard nodes can.
    @Test func containerdsDefaultKeepsTheVMsDisksAway() throws {
        let program = F.program(for: try F.rules(from: Self.containerdDefault))
        let read = F.readAccess, write = F.writeAccess, mknod = F.mknodAccess
        let cases: [(type: UInt32, access: UInt32, major: UInt32, minor: UInt32, allowed: Bool)] = [
            (F.blockDevice, read, 254, 0, false), (F.blockDevice, read | write, 8, 0, false),
            (F.blockDevice, mknod, 254, 16, true), (F.charDevice, mknod, 1, 1, true),  // mknod only: runc's default
            (F.blockDevice, mknod | read, 254, 16, false), (F.charDevice, read, 5, 1, false),  // the guest's console
            (F.charDevice, read, 1, 1, false),  // /dev/mem
            (F.charDevice, read | write, 1, 3, true), (F.charDevice, mknod, 1, 3, true), (F.charDevice, read, 136, 7, true),
            (F.charDevice, read | write, 10, 200, true), (F.charDevice, read | write, 5, 2, true),  // ptmx: standard
            (F.charDevice, read, 1, 9, true),  // urandom: standard
        ]
        for item in cases {
            #expect(Self.run(program, type: item.type, access: item.access, major: item.major, minor: item.minor) == (item.allowed ? 1 : 0),
                    "\(item)")
        }
    }

    /// A deny rule refuses any access it names; an allow rule grants only what it names;
    /// the last matching rule decides.
    @Test func partialAccessAndOrderAreAsTheSpecSays() throws {
        let rules = try F.rules(from: [Rule(allow: true, type: "c", major: 4, access: "rwm"), Rule(allow: false, type: "c", major: 4, minor: 1, access: "w"),
                                       Rule(allow: true, type: "b", major: 7, access: "r")])
        let program = F.program(for: rules)
        func allowed(_ type: UInt32, _ access: UInt32, _ major: UInt32, _ minor: UInt32) -> Bool? {
            Self.run(program, type: type, access: access, major: major, minor: minor).map { $0 == 1 }
        }
        #expect(allowed(F.charDevice, F.readAccess, 4, 1) == true)
        #expect(allowed(F.charDevice, F.readAccess | F.writeAccess, 4, 1) == false, "read-write asks for the denied write")
        #expect(allowed(F.charDevice, F.writeAccess, 4, 2) == true)
        #expect(allowed(F.blockDevice, F.readAccess, 7, 0) == true)
        #expect(allowed(F.blockDevice, F.readAccess | F.writeAccess, 7, 0) == false, "write was not granted")
        #expect(allowed(F.blockDevice, F.mknodAccess | F.readAccess, 7, 0) == false, "mknod was not granted with read")
    }

    /// Type a is every device: its numbers do not narrow it (cgroup v1's meaning).
    @Test func typeAIgnoresNumbers() throws {
        let rules = try F.rules(from: [Rule(allow: true, type: "a", major: 4, minor: 1, access: "r")])
        #expect(rules.first == F.Rule(allow: true, type: nil, major: nil, minor: nil, access: F.readAccess))
        #expect(Self.run(F.program(for: rules), type: F.blockDevice, access: F.readAccess, major: 254, minor: 0) == 1)
    }

    /// Random rule lists and requests: the program decides exactly as the rules mean.
    @Test func theProgramAgreesWithTheRules() throws {
        var generator = SystemRandomNumberGenerator()
        let types = ["a", "b", "c", nil], accesses = ["r", "w", "m", "rw", "rm", "wm", "rwm", nil]
        for _ in 0..<300 {
            let spec = (0..<Int.random(in: 1...6, using: &generator)).map { _ in
                Rule(allow: Bool.random(using: &generator), type: types.randomElement(using: &generator)!,
                     major: [nil, -1, 1, 4, 254].randomElement(using: &generator)!, minor: [nil, -1, 0, 3].randomElement(using: &generator)!,
                     access: accesses.randomElement(using: &generator)!)
            }
            let rules = try F.rules(from: spec)
            let program = F.program(for: rules)
            for _ in 0..<20 {
                let type = [F.blockDevice, F.charDevice].randomElement(using: &generator)!
                let access = UInt32.random(in: 1...7, using: &generator)
                let major = [1, 4, 5, 136, 254].randomElement(using: &generator)! as UInt32
                let minor = UInt32.random(in: 0...4, using: &generator)
                let expected: UInt64 = F.decide(rules, type: type, access: access, major: major, minor: minor) ? 1 : 0
                #expect(Self.run(program, type: type, access: access, major: major, minor: minor) == expected,
                        "rules \(spec), request type \(type) access \(access) \(major):\(minor)")
            }
        }
    }

    /// The kernel takes the program (its verifier) and enforces it: in a cgroup whose
    /// rules allow /dev/null, a shell opens /dev/null and /dev/zero (a standard node) and
    /// is refused /dev/kvm, which it opened in the same cgroup before the filter came.
    @Test(.timeLimit(.minutes(1)))
    func theKernelEnforcesTheFilterOnARealCgroup() throws {
        try ContainerTestSupport.requireContainerSupport()
        try #require(access("/dev/kvm", F_OK) == 0, "this test opens /dev/kvm, a device outside the rules")
        let (cgroup, _) = try ContainerTestSupport.makeTestCgroup("kasa-devices-test")
        defer { rmdir(cgroup) }
        func opens() throws -> String {
            let shell = Process()
            shell.executableURL = URL(filePath: "/bin/sh")
            shell.arguments = ["-c", """
                echo $$ > \(cgroup)/cgroup.procs || exit 9
                for node in null zero kvm; do
                    if (exec 3< /dev/$node) 2>/dev/null; then echo "$node opened"; else echo "$node refused"; fi
                done
                """]
            let output = Pipe()
            shell.standardOutput = output
            shell.standardError = FileHandle.nullDevice
            try shell.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            shell.waitUntilExit()
            #expect(shell.terminationStatus == 0)
            return text
        }
        #expect(try opens() == "null opened\nzero opened\nkvm opened\n", "before the filter")
        let program = try F.attach(try F.rules(from: [Rule(allow: false), Rule(allow: true, type: "c", major: 1, minor: 3, access: "rw")]),
                                   toCgroup: cgroup)
        defer { if let program { close(program) } }
        #expect(program != nil)
        #expect(try opens() == "null opened\nzero opened\nkvm refused\n", "with the filter")
    }

    /// UpdateContainer's rules replace the filter (BPF_F_REPLACE), not join it: a second
    /// program beside the first would let through only what both allow, so /dev/kvm,
    /// refused by the first rules and allowed by the new ones, opens only if the first went.
    @Test(.timeLimit(.minutes(1)))
    func newRulesReplaceTheFilterOnARealCgroup() throws {
        try ContainerTestSupport.requireContainerSupport()
        try #require(access("/dev/kvm", F_OK) == 0, "this test opens /dev/kvm, a device outside the first rules")
        let (cgroup, _) = try ContainerTestSupport.makeTestCgroup("kasa-devices-update")
        defer { rmdir(cgroup) }
        func opensKVM() throws -> Bool {
            let shell = Process()
            shell.executableURL = URL(filePath: "/bin/sh")
            shell.arguments = ["-c", "echo $$ > \(cgroup)/cgroup.procs || exit 9; exec 3< /dev/kvm"]
            shell.standardError = FileHandle.nullDevice
            try shell.run()
            shell.waitUntilExit()
            try #require(shell.terminationStatus != 9, "could not join \(cgroup)")
            return shell.terminationStatus == 0
        }
        let first = try F.attach(try F.rules(from: [Rule(allow: false)]), toCgroup: cgroup)
        #expect(try !opensKVM(), "the first rules allow no /dev/kvm")
        let second = try F.attach(try F.rules(from: [Rule(allow: true, type: "c", major: 10, minor: 232, access: "r")]),
                                  toCgroup: cgroup, replacing: first)
        if let first { close(first) }
        defer { if let second { close(second) } }
        #expect(try opensKVM(), "the new rules allow /dev/kvm: the first program is still attached")
        // The filter still refuses what the new rules do not name.
        let third = try F.attach(try F.rules(from: [Rule(allow: true, type: "c", major: 1, minor: 3, access: "rw")]),
                                 toCgroup: cgroup, replacing: second)
        defer { if let third { close(third) } }
        #expect(try !opensKVM(), "rules without /dev/kvm still allow it")
    }
}

extension DeviceFilter {
    /// What the rules mean, in Swift (the description in DeviceFilter): what the program
    /// is compared with.
    static func decide(_ rules: [Rule], type: UInt32, access: UInt32, major: UInt32, minor: UInt32) -> Bool {
        for rule in rules.reversed() where matches(rule, type: type, access: access, major: major, minor: minor) {
            return rule.allow
        }
        return false
    }

    static func matches(_ rule: Rule, type: UInt32, access: UInt32, major: UInt32, minor: UInt32) -> Bool {
        if let ruleType = rule.type, ruleType != type { return false }
        if rule.allow ? (access & ~rule.access) != 0 : (access & rule.access) == 0 { return false }
        if let ruleMajor = rule.major, ruleMajor != major { return false }
        if let ruleMinor = rule.minor, ruleMinor != minor { return false }
        return true
    }
}

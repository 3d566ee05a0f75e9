import Foundation
import Runtime

/// What a sandbox's running kasa-vmm looks like from the host, against the shim that
/// started it: the jail the runtime promises (docs/security.md) as a list of broken
/// promises, empty when every layer is in place. Read from /proc while the task runs.
enum VMMConfinementProbe {
    static let namespaces = ["pid", "net", "mnt", "ipc", "uts"]

    static func problems(vmm: Int32, shim: Int32) -> [String] {
        var problems: [String] = []
        for name in namespaces {
            let own = link("/proc/\(vmm)/ns/\(name)"), shims = link("/proc/\(shim)/ns/\(name)")
            if own == nil || own == shims { problems.append("\(name) namespace is the shim's (\(own ?? "unreadable"))") }
        }
        let status = fields("/proc/\(vmm)/status")
        let nested = status["NSpid"]?.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) ?? []
        if nested.count != 2 || nested.last != "1" { problems.append("NSpid \(nested): not the init of a PID namespace of its own") }
        // Seen from inside: its own /proc lists no process but itself.
        let visible = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(vmm)/root/proc")) ?? [])
            .filter { $0.allSatisfy(\.isNumber) }
        if visible != ["1"] { problems.append("its /proc lists processes \(visible), not itself alone") }
        let root = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(vmm)/root")) ?? []
        if root.isEmpty || root.contains("etc") { problems.append("its root is not a jail: \(root)") }
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(vmm)/task")) ?? []
        if threads.isEmpty { problems.append("no threads readable") }
        // vmm_user's default, which scripts/install-deps.sh creates: every id of every thread.
        let user = (try? VMMUser.resolve(VMMUser.defaultName)).flatMap { $0 }
        if user == nil { problems.append("no user \(VMMUser.defaultName) on this host to compare with") }
        for thread in threads {
            let fields = fields("/proc/\(vmm)/task/\(thread)/status")
            let name = fields["Name"] ?? thread
            if let user {
                let ids = { (uid: UInt32) in Array(repeating: String(uid), count: 4).joined(separator: "\t") }
                if fields["Uid"] != ids(user.uid) { problems.append("thread \(name): Uid \(fields["Uid"] ?? "?"), not \(user.uid)") }
                if fields["Gid"] != ids(user.gid) { problems.append("thread \(name): Gid \(fields["Gid"] ?? "?"), not \(user.gid)") }
                if fields["Groups"] != "" { problems.append("thread \(name): supplementary groups \(fields["Groups"] ?? "?")") }
            }
            if fields["Seccomp"] != "2" { problems.append("thread \(name): Seccomp \(fields["Seccomp"] ?? "?")") }
            if fields["NoNewPrivs"] != "1" { problems.append("thread \(name): NoNewPrivs \(fields["NoNewPrivs"] ?? "?")") }
            if !name.hasPrefix("kasa-fs"), fields["CapEff"] != "0000000000000000" {
                problems.append("thread \(name): CapEff \(fields["CapEff"] ?? "?")")
            }
        }
        let limits = (try? String(contentsOfFile: "/proc/\(vmm)/limits", encoding: .utf8)) ?? ""
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?
            .split(separator: " ").compactMap { Int($0) } ?? []
        if openFiles.count != 2 || openFiles[0] != openFiles[1] || openFiles[0] > 4096 {
            problems.append("open files limit (soft, hard) \(openFiles): not the jail's 4096 or less")
        }
        return problems
    }

    /// The VMM's cgroup v2 directory on the host (`sandbox_cgroup_only`): the "0::" line
    /// of /proc/PID/cgroup under the unified hierarchy's mount; nil when it has none.
    static func cgroupDirectory(of vmm: Int32, hierarchy: String) -> String? {
        let lines = (try? String(contentsOfFile: "/proc/\(vmm)/cgroup", encoding: .utf8))?.split(separator: "\n") ?? []
        guard let line = lines.first(where: { $0.hasPrefix("0::") }) else { return nil }
        return hierarchy + line.dropFirst(3)
    }

    static func link(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

    static func fields(_ path: String) -> [String: String] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            result[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return result
    }
}

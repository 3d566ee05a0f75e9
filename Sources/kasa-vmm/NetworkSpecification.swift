import VMM
import Virtio

/// Parses `--net tap=NAME|fd=N[,mac=02:..][,mtu=1500]`: a virtio-net interface on the TAP
/// `NAME` (opened here, in this process's network namespace) or on TAP descriptor `N`
/// inherited from the runtime that started kasa-vmm.
enum NetworkSpecification {
    static func parse(_ text: String) throws -> NetworkInterfaceConfiguration {
        var backend: NetworkInterfaceConfiguration.Backend?
        var mac: MACAddress?
        var mtu: UInt16 = 1500
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            if field == "unplugged" {
                guard backend == nil else { throw invalid(text, "give one of tap=, fd= and unplugged") }
                backend = .unplugged
                continue
            }
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw invalid(text, "'\(field)' is not key=value") }
            switch parts[0] {
            case "tap", "fd":
                guard backend == nil else { throw invalid(text, "give one of tap=, fd= and unplugged") }
                if parts[0] == "tap" {
                    backend = .tapName(parts[1])
                } else {
                    guard let descriptor = Int32(parts[1]), descriptor >= 3 else {
                        throw invalid(text, "fd=\(parts[1]) is not an inherited descriptor (3 or more)")
                    }
                    backend = .descriptor(descriptor)
                }
            case "mac":
                guard let parsed = MACAddress(parts[1]) else { throw invalid(text, "'\(parts[1])' is not a MAC address (02:42:ac:11:00:02)") }
                mac = parsed
            case "mtu":
                guard let parsed = UInt16(parts[1]), parsed >= 68 else { throw invalid(text, "mtu=\(parts[1]) is not within 68...65535") }
                mtu = parsed
            default:
                throw invalid(text, "unknown key '\(parts[0])' (use tap, fd or unplugged, mac, mtu)")
            }
        }
        guard let backend else { throw invalid(text, "tap=NAME, fd=N or unplugged is required") }
        return NetworkInterfaceConfiguration(backend: backend, mac: mac, mtu: mtu)
    }

    static func invalid(_ text: String, _ reason: String) -> VMMError {
        .deviceSetupFailed("invalid --net '\(text)': \(reason)")
    }
}

/// Why a guest went away, as its console tells it. The runtime boots every guest with
/// `panic=-1` and `reboot=k`: a panicking kernel resets the machine at once, and kasa-vmm
/// ends as it does for any guest reset (status 0). Only the console says it was a panic
/// (and which one: an out-of-memory panic, init — the agent — killed), so a sandbox that
/// stops that way is reported with the kernel's own line.
///
/// The console is guest output, hostile like everything a guest sends: only the last panic
/// line is taken, cut to printable ASCII and a bounded length before it reaches a log.
public enum GuestCrash {
    /// What the kernel prints before the reason (`panic()` in kernel/panic.c).
    static let panicMarker = "Kernel panic - not syncing: "
    /// The longest reason shown.
    static let reasonLimit = 200

    /// The reason of the last kernel panic in console text, nil when it shows none.
    public static func panicReason<Text: StringProtocol>(inConsole text: Text) -> String? {
        let lines = text.split(whereSeparator: \.isNewline)
        guard let line = lines.last(where: { $0.contains(panicMarker) }),
              let marker = line.firstRange(of: panicMarker) else { return nil }
        let printable = line[marker.upperBound...].unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }
        let reason = String(String.UnicodeScalarView(printable.prefix(reasonLimit)))
        let trimmed = reason.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()
        return trimmed.isEmpty ? "no reason given" : String(trimmed)
    }

    /// How a sandbox whose console is at `consolePath` ended, if its console names a panic:
    /// "the guest kernel panicked: REASON". Reads at most the console's last 16 KiB.
    public static func describe(consolePath: String) -> String? {
        panicReason(inConsole: HostFile.tail(consolePath, bytes: 16 * 1024)).map { "the guest kernel panicked: \($0)" }
    }
}

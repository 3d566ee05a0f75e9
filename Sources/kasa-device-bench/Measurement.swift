#if canImport(Glibc)
import Glibc
#endif

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) * 1e-9
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// A small deterministic generator (PCG-style LCG output), so runs are reproducible.
struct BenchRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 17
    }
    mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }
}

/// One row of the result table.
struct ResultRow {
    var device: String
    var test: String
    /// Per run: MiB/s.
    var mebibytesPerSecond: [Double]
    /// Per run: requests (or packets) per second.
    var operationsPerSecond: [Double]
    /// Per run: share of the wall time spent inside the transport and device (blk only).
    var deviceShare: [Double]?
}

func format(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if decimals == 0 {
        if let dot = text.firstIndex(of: ".") { text = String(text[..<dot]) }
        return text
    }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    let fraction = parts.count > 1 ? String(parts[1]) : ""
    let digits = fraction.count >= decimals ? String(fraction.prefix(decimals)) : fraction + String(repeating: "0", count: decimals - fraction.count)
    return parts[0] + "." + digits
}

func pad(_ text: String, _ width: Int, right: Bool = true) -> String {
    let count = text.count
    guard count < width else { return text }
    let padding = String(repeating: " ", count: width - count)
    return right ? padding + text : text + padding
}

/// The plain-text table: medians, with the spread (min-max of MiB/s) of the runs.
func renderTable(_ rows: [ResultRow], runs: Int) -> String {
    var lines: [String] = []
    let header = pad("device", 6, right: false) + "  " + pad("test", 34, right: false) + "  "
        + pad("MiB/s", 9) + "  " + pad("min-max MiB/s", 17) + "  " + pad("ops/s", 9) + "  " + pad("us/op", 7) + "  " + pad("in device", 9)
    lines.append(header)
    lines.append(String(repeating: "-", count: header.count))
    for row in rows {
        let mib = median(row.mebibytesPerSecond)
        let ops = median(row.operationsPerSecond)
        let spread = format(row.mebibytesPerSecond.min() ?? .nan, decimals: 0) + "-" + format(row.mebibytesPerSecond.max() ?? .nan, decimals: 0)
        let share = row.deviceShare.map { format(median($0) * 100, decimals: 0) + " %" } ?? "-"
        lines.append(pad(row.device, 6, right: false) + "  " + pad(row.test, 34, right: false) + "  "
            + pad(format(mib, decimals: 0), 9) + "  " + pad(spread, 17) + "  " + pad(format(ops, decimals: 0), 9) + "  "
            + pad(format(1e6 / ops, decimals: 2), 7) + "  " + pad(share, 9))
    }
    lines.append("")
    lines.append("Medians of \(runs) runs each. ops = block requests or vsock data packets; us/op = 1/ops (wall time per")
    lines.append("operation, one thread driving); in device = share of that time inside VirtioMMIOTransport.notify")
    lines.append("(queue pop, request, pread/pwrite, used ring, interrupt), the rest is the mock driver's own work.")
    return lines.joined(separator: "\n")
}

// MARK: Machine description

func readTextFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while data.count < limit {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        data += chunk[0..<count]
    }
    return String(decoding: data, as: UTF8.self)
}

func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.release) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

func cpuModel() -> String {
    guard let text = readTextFile("/proc/cpuinfo") else { return "unknown CPU" }
    for line in text.split(separator: "\n") where line.hasPrefix("model name") {
        if let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters()
        }
    }
    return "unknown CPU"
}

func memoryTotalGiB() -> String {
    guard let text = readTextFile("/proc/meminfo") else { return "?" }
    for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
        let digits = line.filter(\.isNumber)
        if let kib = Double(String(digits)) { return format(kib / 1024 / 1024, decimals: 0) }
    }
    return "?"
}

func loadAverage() -> String {
    var loads = [Double](repeating: 0, count: 3)
    guard getloadavg(&loads, 3) == 3 else { return "?" }
    return loads.map { format($0, decimals: 2) }.joined(separator: " ")
}

func utcDate() -> String {
    var seconds = time(nil)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M UTC", &parts)
    return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The filesystem type `path` lives on (the longest matching mount point in /proc/mounts).
func fileSystemType(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return "unknown filesystem" }
    let target = String(cString: resolved)
    free(resolved)
    var best = (length: -1, type: "unknown filesystem")
    for line in (readTextFile("/proc/mounts") ?? "").split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3 else { continue }
        let mountPoint = String(fields[1])
        let inside = target == mountPoint || mountPoint == "/" || target.hasPrefix(mountPoint + "/")
        if inside && mountPoint.count > best.length { best = (mountPoint.count, String(fields[2])) }
    }
    return best.type
}

/// Prints a line straight to standard output (unbuffered, so progress shows through a pipe).
func say(_ line: String = "") {
    let bytes = Array((line + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let count = bytes[done...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if count <= 0 { return }
        done += count
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

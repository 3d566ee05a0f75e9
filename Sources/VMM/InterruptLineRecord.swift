import HostOS

/// What KVM answered to each rising edge of one interrupt line: the evidence for telling a
/// guest that never took an interrupt from one whose interrupt controller never passed it on.
final class InterruptLineRecord: @unchecked Sendable {
    private let lock = Lock()
    // Guarded by `lock`.
    private var statuses: [Int32: Int] = [:]
    private var unreported = 0
    private var failures = 0

    func record(rising: Bool, status: Result<Int32?, any Error>) {
        lock.withLock {
            switch status {
            case .failure: failures += 1
            case .success(nil): if rising { unreported += 1 }
            case .success(let value?): if rising { statuses[value, default: 0] += 1 }
            }
        }
    }

    var description: String {
        lock.withLock {
            let counts = statuses.keys.sorted().map { "\($0): \(statuses[$0] ?? 0)" }.joined(separator: ", ")
            return "rising-edge statuses [\(counts)] unreported \(unreported) failed calls \(failures)"
        }
    }
}

/// A FIFO of bytes waiting for a host socket to take them; consuming from the front is O(1)
/// amortized (the storage is compacted once the consumed part dominates).
struct VsockByteQueue {
    private var storage: [UInt8] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { start == storage.count }
    /// The bytes still queued, oldest first.
    var pending: ArraySlice<UInt8> { storage[start...] }

    mutating func append(contentsOf bytes: some Collection<UInt8>) {
        storage.append(contentsOf: bytes)
    }

    mutating func removeFirst(_ count: Int) {
        start += min(count, self.count)
        if start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        } else if start >= 1 << 16 && start * 2 >= storage.count {
            storage.removeFirst(start)
            start = 0
        }
    }

    mutating func removeAll() {
        storage = []
        start = 0
    }
}
